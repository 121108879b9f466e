"""Resumable training and the step schedules: "2 epochs" equals "1 epoch, then --resume to 2" bit
for bit (weights, accuracies), for both rules with a schedule that changes the step at epoch 1."""

import json

import numpy as np
import pytest

from mfsnn.golden.train import load_model
from mfsnn.main import main

RUNS = [
    ("desire", ["--rule", "desire", "--topology", "196-16-10", "--set", "lr_halving_epochs=1"]),
    ("stidi", ["--rule", "stidi", "--topology", "196-16-10", "--set", "lr_halving_epochs=1"]),
    ("stidi-float", ["--rule", "stidi", "--arith", "float", "--topology", "196-16-10",
                     "--set", "lr_halving_epochs=1"]),
]
LIMITS = ["--train-limit", "120", "--test-limit", "40", "--quiet"]


def trained(out):
    learner, _ = load_model(out / "model.npz")
    return learner.weight_arrays(), json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("name,options", RUNS, ids=[r[0] for r in RUNS])
def test_resumed_run_equals_uninterrupted_run(tmp_path, name, options):
    assert main(["train", *options, "--epochs", "2", *LIMITS, "--out", str(tmp_path / "whole")]) == 0
    assert main(["train", *options, "--epochs", "1", *LIMITS, "--out", str(tmp_path / "split")]) == 0
    assert main(["train", "--resume", str(tmp_path / "split"), "--epochs", "2", "--quiet"]) == 0
    whole_weights, whole = trained(tmp_path / "whole")
    split_weights, split = trained(tmp_path / "split")
    assert whole_weights.keys() == split_weights.keys()
    for key in whole_weights:
        assert np.array_equal(whole_weights[key], split_weights[key]), key
    assert whole["history"] == split["history"] and split["epochs_done"] == 2


def test_schedule_changes_the_step(tmp_path):
    """Halving the step every epoch gives other weights after epoch 2 than a fixed step."""
    base = ["--rule", "stidi", "--topology", "196-16-10", "--epochs", "2", *LIMITS]
    assert main(["train", *base, "--set", "lr_halving_epochs=1", "--out", str(tmp_path / "halved")]) == 0
    assert main(["train", *base, "--out", str(tmp_path / "fixed")]) == 0
    halved, _ = trained(tmp_path / "halved")
    fixed, _ = trained(tmp_path / "fixed")
    assert any(not np.array_equal(halved[k], fixed[k]) for k in halved)


def test_patience_stops_and_says_why(tmp_path):
    """Seed 1 on 120 images: test accuracy 7.5 % after epoch 1, 5.0 % after epoch 2, so patience 1
    stops there (and the reason is in metrics.json)."""
    out = tmp_path / "run"
    assert main(["train", "--topology", "196-16-10", "--epochs", "6", "--patience", "1", *LIMITS,
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 2 and metrics["best_epoch"] == 1 and metrics["patience"] == 1
    assert metrics["test_accuracy"] == [0.075, 0.05]
    assert metrics["stopped_early"] == "best test accuracy not improved for 1 epochs"
    # model.npz is epoch 2's (what --resume continues from), best_model.npz epoch 1's
    assert main(["train", "--topology", "196-16-10", "--epochs", "1", *LIMITS, "--out", str(tmp_path / "one")]) == 0
    epoch1, _ = trained(tmp_path / "one")
    last, _ = trained(out)
    best, _ = load_model(out / "best_model.npz")
    best = best.weight_arrays()
    assert all(np.array_equal(best[k], epoch1[k]) for k in epoch1)
    assert any(not np.array_equal(last[k], epoch1[k]) for k in epoch1)


@pytest.mark.parametrize("extra,message", [
    (["--topology", "196-8-10"], "--topology comes from the run being resumed"),
    (["--seed", "3"], "--seed comes from the run being resumed"),
    (["--epochs", "1"], "already holds 1 epoch(s)"),
])
def test_resume_refuses_options_the_run_fixes(tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    assert main(["train", "--topology", "196-16-10", "--epochs", "1", *LIMITS, "--out", str(run)]) == 0
    capsys.readouterr()
    args = ["train", "--resume", str(run), "--epochs", "2", "--quiet", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_resume_of_a_directory_without_a_checkpoint_is_refused(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--epochs", "2"]) == 2
    assert "needs metrics.json and model.npz" in capsys.readouterr().err
