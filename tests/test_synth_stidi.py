# amaranth: UnusedElaboratable=no
"""``mfsnn synth --rule stidi``: the STiDi-BP core (rtl/stidi_core.py) through the FPGA build. One real
iCE40 build of a tiny core (marker ``synth``), and the parts that need no tool: the board top around
the STiDi core, its memories in the pre-check, the labels and the option checks."""

import argparse
import json
import re

import numpy as np
import pytest
from conftest import run_synth_cli as run_cli

from mfsnn import synth_cmd
from mfsnn.golden.desire_config import DesireConfig
from mfsnn.golden.stidi import StidiConfig
from mfsnn.rtl import synth_flow
from mfsnn.rtl.board_top import SerialHarness
from mfsnn.rtl.core import CoreParams, DesireCore
from mfsnn.rtl.stidi_core import StidiCore, StidiCoreParams
from mfsnn.rtl.synth_flow import (BOARDS, SynthError, compare_reports, core_memories, design_label, fit_check,
                                  result_label, spram_plan, synthesize)

CSNN = "28x28-c5x8-p2-c5x16-p2-10"


def stidi(topology, parallelism=1, **settings):
    return StidiCoreParams(StidiConfig(topology=topology, **settings), parallelism)


# ------------------------------------------------------------------------------------------------
# a real build

@pytest.mark.synth
def test_tiny_stidi_ice40_build(yosys, nextpnr_ice40, tmp_path):
    # 16-12-4 with 8-bit latent weights and T = 24: about a minute here
    params = stidi("16-12-4", weight_bits=8, time_steps=24, thresholds=(40, 20))
    report = synthesize(params, BOARDS["icebreaker"], tmp_path, seed=2, command="test", log=lambda line: None)
    assert report["problems"] == []
    assert report["bitstream"] == "top.bin" and (tmp_path / "top.bin").stat().st_size > 0
    assert json.loads((tmp_path / "report.json").read_text()) == report
    design = report["design"]
    assert (design["rule"], design["topology"], design["weight_bits"], design["parallelism"]) == \
        ("stidi", "16-12-4", 8, 1)
    assert design["single_port_memories"] == []
    summary = report["summary"]
    assert summary["yosys"]["dsp"] == 0 and summary["dsp"] == 0      # multiplication-free
    assert summary["spram"]["used"] == 0                              # every STiDi memory is dual-port
    log = (tmp_path / "top.tim").read_text()
    assert summary["logic"]["used"] == int(re.search(r"ICESTORM_LC:\s+(\d+)/", log).group(1))
    assert summary["block_ram"]["used"] == int(re.search(r"ICESTORM_RAM:\s+(\d+)/", log).group(1))
    assert summary["memory_bits"]["needed"] == sum(d * w for d, w, _ in core_memories(params).values())
    assert report["precheck"]["core_luts"] == synth_flow.STIDI_CORE_LUTS
    assert summary["fmax"]["cd_sync.clk"]["achieved_mhz"] > 0


# ------------------------------------------------------------------------------------------------
# no tools needed

def test_the_harness_picks_the_core_by_its_params():
    harness = SerialHarness(CoreParams(DesireConfig(topology=(8, 4, 2)), 1))
    harness.core._MustUse__silence = True      # built to be looked at, not elaborated
    assert isinstance(harness.core, DesireCore)
    with pytest.raises(ValueError, match="without its debug tap"):
        SerialHarness(StidiCoreParams(StidiConfig(topology="16-12-4"), 1, debug=True))
    with pytest.raises(TypeError, match="CoreParams or StidiCoreParams"):
        SerialHarness(StidiConfig(topology="16-12-4"))


def test_stidi_memories_are_the_cores_own():
    """The pre-check reads the elaborated STiDi core: the ``WeightBank`` layers, the shared memories
    of ``stidi_ports.memory_table`` (sign planes, spike times, U, error, displacement) and the phases'
    own (the forward's step lists, the encoder ROM), every one dual-port."""
    params = stidi("16-12-4", parallelism=2)
    memories = core_memories(params)
    assert memories["weights.w1"] == (params.blocks(1) * 16, 2 * 16, "dual")
    assert memories["s1"] == (params.blocks(1) * 16, 2, "dual")
    assert memories["time1"] == (6, 2 * params.time_bits, "dual")
    assert {"weights.w2", "s2", "time0", "time2", "u_out", "err", "disp", "fc_forward.head",
            "enc.rom"} <= set(memories)
    assert {kind for _, _, kind in memories.values()} == {"dual"}
    assert fit_check(BOARDS["icebreaker"], params).memory_bits == sum(d * w for d, w, _ in memories.values())
    conv = core_memories(stidi(CSNN))
    assert conv["weights.w3"] == (7840, 16, "dual") and conv["unpooled"][0] == 6272


def test_precheck_refuses_stidi_196_64_10_on_the_up5k(tmp_path):
    """196x64 latent weights of 16 bits (200,704 bits) alone exceed the 30 EBR, and the STiDi core has
    no single-port memory for the SPRAM."""
    params = stidi("196-64-10")
    assert spram_plan(BOARDS["icebreaker"], params) == frozenset()
    fit = fit_check(BOARDS["icebreaker"], params)
    assert not fit.memory_fits and fit.spram_tiles == 0 and fit.dual_port_bits > 196 * 64 * 16
    assert fit.summary().startswith("stidi 196-64-10 P=1 W16 needs ")
    out = tmp_path / "ice"
    with pytest.raises(SynthError, match=r"^stidi 196-64-10 P=1 W16 needs [\d,]+ memory bits .* does not fit"):
        synthesize(params, BOARDS["icebreaker"], out, log=lambda line: None)
    assert not out.exists()


@pytest.mark.parametrize("board,topology,parallelism,fits", [
    ("ulx3s-85f", "196-64-10", 16, True),
    ("ulx3s-85f", "784-128-10", 16, True),       # 1.8 Mbit of 3.8
    ("ulx3s-25f", "784-128-10", 16, False),      # 1.8 Mbit of 1.0
    ("ulx3s-85f", CSNN, 1, True),
    ("icebreaker", "16-12-4", 1, True),
])
def test_precheck_of_stidi_builds(board, topology, parallelism, fits):
    fit = fit_check(BOARDS[board], stidi(topology, parallelism))
    assert fit.fits == fits and fit.logic_fits
    assert "for STiDi" in fit.summary() or "STiDi conv" in fit.summary()


def test_stidi_logic_estimate():
    # placed on the 85F: 196-64-10 4,005 (P=1), 7,214 (P=4), 19,714 (P=16); the CSNN-FPGA 7,648
    for parallelism, placed in ((1, 4_005), (4, 7_214), (16, 19_714)):
        assert abs(synth_flow.stidi_logic_estimate(stidi("196-64-10", parallelism)) - placed) < 0.05 * placed
    assert abs(synth_flow.stidi_logic_estimate(stidi(CSNN)) - 7_648) < 0.05 * 7_648
    assert synth_flow.stidi_logic_estimate(stidi("196-64-10")) == synth_flow.STIDI_CORE_LUTS
    assert synth_flow.stidi_logic_estimate(stidi("196-64-10", 16)) == \
        synth_flow.STIDI_CORE_LUTS + 15 * synth_flow.STIDI_LUTS_PER_LANE
    assert synth_flow.stidi_logic_estimate(stidi(CSNN)) == synth_flow.STIDI_CONV_LUTS


def test_labels_name_the_rule_and_keep_the_desire_ones():
    board = BOARDS["ulx3s-85f"]
    assert design_label(stidi("196-64-10")) == "stidi 196-64-10 P=1 W16"
    assert result_label(board, stidi("196-64-10")) == "ulx3s-85f-stidi-196-64-10-W16-P1"
    assert result_label(board, stidi(CSNN, weight_bits=12)) == f"ulx3s-85f-stidi-{CSNN}-W12-P1"
    desire = CoreParams(DesireConfig.for_weight_bits(24, topology=(196, 64, 10)), 16)
    assert design_label(desire) == "196-64-10 P=16 W24"
    assert result_label(board, desire) == "ulx3s-85f-196-64-10-W24-P16"
    assert result_label(BOARDS["icebreaker"], CoreParams(DesireConfig.for_weight_bits(16, topology=(196, 64, 10)), 1)) \
        == "icebreaker-196-64-10-W16-P1"


def test_compare_names_a_stidi_design(tmp_path):
    report = {"device": "LFE5U-85F-BG381",
              "design": {"rule": "stidi", "topology": CSNN, "parallelism": 1, "weight_bits": 16},
              "clock": {"board_mhz": 25.0, "target_mhz": 60.0},
              "summary": {"yosys": {"ff": 1, "carry": 1}, "logic": None, "block_ram": None, "spram": None,
                          "dsp": 0, "fmax": {}},
              "wall_seconds": 1.0, "problems": []}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(report))
    assert f"stidi {CSNN} P=1 W16" in compare_reports([tmp_path / "a"])


def test_stidi_options_default_to_the_integer_model(tmp_path):
    def params_of(*argv):
        parser = argparse.ArgumentParser(prog="mfsnn")
        synth_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
        return synth_cmd._validate(parser.parse_args(["synth", *argv, "--out", str(tmp_path / "o")]))[0]

    params = params_of("--board", "ulx3s-85f", "--rule", "stidi", "--topology", "196-64-10", "-P", "4")
    assert params == StidiCoreParams(StidiConfig(topology="196-64-10"), 4)
    assert params_of("--board", "ulx3s-85f", "--rule", "stidi", "--topology", CSNN,
                     "--weight-bits", "12").cfg.weight_bits == 12
    assert params_of("--board", "ulx3s-85f", "--topology", "196-64-10").cfg.weight_bits == 24   # desire
    assert synth_cmd.DEFAULT_WEIGHT_BITS["stidi"] == StidiConfig.weight_bits


@pytest.mark.parametrize("argv, message", [
    (["--topology", "16-x-4"], "--topology: topology '16-x-4'"),
    (["--topology", "28x28-p2-c5x8-10"], "--topology 28x28-p2-c5x8-10: StidiCore needs a conv layer"),
    (["--topology", "16-12-4", "--weight-bits", "1"], "--weight-bits 1: weight_bits 1 must be in 2..32"),
    (["--topology", "16-12-4", "--weight-bits", "33"], "--weight-bits 33: weight_bits 33 must be in 2..32"),
    (["--topology", "16-12-4", "-P", "3"], "--parallelism 3: parallelism must be a power of two"),
    (["--topology", "28x28-c5x8-10", "-P", "2"], "--parallelism 2: a conv topology"),
    (["--topology", "196-64-10"], "stidi 196-64-10 P=1 W16 needs"),       # the pre-check's refusal
    (["--topology", "16-12-4", "--seed", "-1"], "--seed must be >= 0"),
])
def test_cli_rejects_bad_stidi_options_in_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("--board", "icebreaker", "--rule", "stidi", *argv, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfsnn synth: error: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []
