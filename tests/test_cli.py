"""The mfsnn command line: outputs of train/eval and one-line errors for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mfsnn.main import main


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


@pytest.mark.parametrize("args,message", [
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--topology", "784-x-10"], "topology '784-x-10'"),
    (["train", "--topology", "100-10"], "supported sizes"),
    (["train", "--weight-bits", "7"], "no weight profile for 7 bits"),
    (["eval", "--model", "/nonexistent/model.npz"], "no such model file"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "/nonexistent"),
    (["train", "--set", "levels"], "--set 'levels': expected KEY=VALUE"),
    (["train", "--rule", "stidi", "--set", "bogus=1"], "unknown STiDi-BP options ['bogus']"),
    (["train", "--rule", "stidi", "--set", "error_norm=l1"], "error_norm 'l1' not in"),
])
def test_user_errors_are_one_line_without_traceback(args, message, capsys, tmp_path):
    assert main(args + ["--out", str(tmp_path)] if args[0] == "train" else args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err


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


def test_verilog_command_refuses_impossible_widths(capsys):
    assert main(["verilog", "--weight-bits", "5"]) == 2
    assert "no weight profile for 5 bits" in capsys.readouterr().err


@pytest.mark.sim
def test_sim_command_matches_and_exits_zero(tmp_path, capsys, monkeypatch):
    from mfsnn.sim import simulator_available

    if not simulator_available("icarus"):
        pytest.skip("iverilog is not installed")
    monkeypatch.chdir(tmp_path)                     # the default, relative build directory
    code = main(["sim", "--topology", "16-12-4", "--samples", "2", "--inference-samples", "1",
                 "--simulator", "icarus"])
    out = capsys.readouterr().out
    assert code == 0 and "ALL MATCHED" in out and "3 (2 training, 1 inference)" in out, out
