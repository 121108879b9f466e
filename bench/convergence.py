"""Convergence runs (issue: reach the papers): each run trains with ``mfsnn train`` until its best
test accuracy has not improved for 5 epochs or 50 epochs are done, checkpointing every epoch into
``results/convergence/<name>/``; a run whose directory already holds a checkpoint is resumed with
``--resume``, so the queue can be stopped and restarted at any time (in another session too).

    MFSNN_DATA=../shared/datasets nohup python bench/convergence.py desire-196-64-10-mnist-fixed ... &

Without names it lists the runs. Each run's command line is in ``<name>/command.txt``.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "results" / "convergence"
STOP = ["--epochs", "50", "--patience", "5"]

RUNS = {
    f"desire-{topo}-{data}-{arith}": ["--rule", "desire", "--arith", arith, "--topology", topo, "--dataset", data]
    for topo in ("196-64-10", "784-128-10") for data in ("mnist", "fashion-mnist") for arith in ("fixed", "float")
}
# The FPGA-sized net with the larger rate the flow uses on 196 inputs (the default 2^-16 plateaus at 90 %).
RUNS["desire-196-64-10-mnist-fixed-lr13"] = RUNS["desire-196-64-10-mnist-fixed"] + ["--lr-shift", "13"]
RUNS["desire-196-64-10-mnist-float-lr2^-13"] = RUNS["desire-196-64-10-mnist-float"] + ["--lr", str(2.0 ** -13)]
# The tuned desire-BP settings of results/convergence/desire-study.md: no output desire threshold, rate
# 2^-15, trace decay shift 3.
TUNED = ["--set", "output_desire_threshold=0.0", "--set", "decay_shift=3"]
RUNS.update({
    f"desire-{topo}-{data}-fixed-outthr0-lr15-ds3": RUNS[f"desire-{topo}-{data}-fixed"] + ["--lr-shift", "15"] + TUNED
    for topo in ("196-64-10", "784-128-10") for data in ("mnist", "fashion-mnist")
})
RUNS.update({
    f"desire-{topo}-{data}-float-outthr0-lr2^-15-ds3": RUNS[f"desire-{topo}-{data}-float"] + ["--lr", str(2.0 ** -15)]
    + TUNED
    for topo in ("196-64-10", "784-128-10") for data in ("mnist", "fashion-mnist")
})
# The tuned settings plus the hidden "satisfied" check (spec 4.3) at the label's target count TM = 16,
# and below it.
RUNS.update({
    f"desire-{topo}-mnist-{arith}-outthr0-lr{rate}-ds3-sat{count}": RUNS[f"desire-{topo}-mnist-{arith}-outthr0-lr{rate}-ds3"]
    + ["--set", f"hidden_satisfied_count={count}"]
    for topo in ("196-64-10", "784-128-10") for arith, rate in (("fixed", "15"), ("float", "2^-15"))
    for count in (8, 12, 16)
})
# The satisfied check with the rate halving every 8 epochs instead of 17.
RUNS["desire-784-128-10-mnist-fixed-outthr0-lr15-ds3-sat16-half8"] = (
    RUNS["desire-784-128-10-mnist-fixed-outthr0-lr15-ds3-sat16"] + ["--set", "lr_halving_epochs=8"])
# The best 784-128-10 MNIST run with other seeds, for the spread at convergence.
RUNS.update({
    f"desire-784-128-10-mnist-fixed-outthr0-lr15-ds3-sat16-seed{seed}":
        RUNS["desire-784-128-10-mnist-fixed-outthr0-lr15-ds3-sat16"] + ["--seed", str(seed)]
    for seed in (2, 3)
})
# Fashion-MNIST: the defaults plus the satisfied check (the MNIST-tuned settings do worse there).
RUNS.update({
    f"desire-784-128-10-fashion-mnist-{arith}-sat16": RUNS[f"desire-784-128-10-fashion-mnist-{arith}"]
    + ["--set", "hidden_satisfied_count=16"]
    for arith in ("fixed", "float")
})
# The paper topology with the paper's settings (the defaults), for as many epochs as background runs give.
RUNS["desire-784-1600-800-10-mnist-fixed"] = ["--rule", "desire", "--arith", "fixed", "--topology", "784-1600-800-10",
                                              "--dataset", "mnist"]
RUNS.update({
    f"stidi-{topo}-{data}-{arith}": ["--rule", "stidi", "--arith", arith, "--topology", topo, "--dataset", data,
                                     "--set", "lr_halving_epochs=5"]
    for topo in ("784-128-10", "28x28-c5x8-p2-c5x16-p2-10") for data in ("mnist", "fashion-mnist")
    for arith in ("fixed", "float")
})

# The output threshold that closes the one-epoch integer-vs-float gap (docs/golden-spec-stidi.md §15), to
# convergence before it can become the default.
RUNS.update({
    f"stidi-784-128-10-{data}-{arith}-othr180": RUNS[f"stidi-784-128-10-{data}-{arith}"]
    + ["--set", "thresholds=[1000,180]"]
    for data in ("mnist", "fashion-mnist") for arith in ("fixed", "float")
})


def command(name: str) -> list[str]:
    out = ROOT / name
    base = [sys.executable, "-m", "mfsnn", "train", "--quiet"]
    if (out / "metrics.json").is_file() and (out / "model.npz").is_file():
        return base + ["--resume", str(out), "--epochs", STOP[1]]      # patience comes from the checkpoint
    return base + RUNS[name] + STOP + ["--out", str(out)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="run names, in order")
    args = parser.parse_args()
    unknown = [name for name in args.runs if name not in RUNS]
    if unknown or not args.runs:
        print("\n".join(RUNS), file=sys.stderr if unknown else sys.stdout)
        if unknown:
            print(f"convergence.py: unknown run(s): {', '.join(unknown)}", file=sys.stderr)
        return 2 if unknown else 0
    for name in args.runs:
        metrics = ROOT / name / "metrics.json"
        if metrics.is_file():
            done = json.loads(metrics.read_text())
            if done.get("stopped_early") or done["epochs_done"] >= int(STOP[1]):
                print(f"{name}: converged ({done['epochs_done']} epochs, best {done['best_test_accuracy']})")
                continue
        cmd = command(name)
        (ROOT / name).mkdir(parents=True, exist_ok=True)
        with open(ROOT / name / "command.txt", "a") as log:
            log.write(shlex.join(cmd) + "\n")
        print(f"{name}: {shlex.join(cmd)}", flush=True)
        code = subprocess.call(cmd)
        if code:
            print(f"{name}: exit {code}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
