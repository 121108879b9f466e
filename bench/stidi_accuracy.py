"""Accuracy of binarized STiDi-BP: integer vs float, binary vs real forward, FC and CSNN.

    MFSNN_DATA=/work/shared/datasets nice -n 10 python bench/stidi_accuracy.py \
        --datasets mnist fashion-mnist --topology 784-128-10 \
        --variants fixed float float-real --out results/stidi/fc_784-128-10.json

One JSON per invocation with every run's metrics (the trainer's metrics dict: strict test
accuracy, train/inference samples/s, settings), a per-(dataset, variant) summary over the seeds
(mean, min, max final test accuracy) and the exact command line. ``--seeds 1 2 3`` repeats each run
with other initial weights and sample orders: one-epoch accuracies of these online learners vary by
1-2 points between seeds. The JSON is rewritten after every run, so partial results survive. Same
shuffle as ``mfsnn train`` (golden.train).
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from mfsnn.golden.data import load_dataset  # noqa: E402
from mfsnn.golden.stidi import make_stidi_learner  # noqa: E402
from mfsnn.golden.train import train  # noqa: E402

VARIANTS = {
    "fixed": dict(arith="fixed"),                           # binary forward, integer learning
    "float": dict(arith="float"),                           # binary forward, float STiDi-BP
    "float-real": dict(arith="float", forward="real"),      # real forward weights (the repo's FC)
    "fixed-real": dict(arith="fixed", forward="real"),      # multi-bit forward W >> fwd_shift
}


def summarize(runs: list) -> list:
    """Final test accuracy over seeds per (dataset, variant): mean, min, max, and the seeds."""
    groups = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["variant"]), []).append(run)
    return [{"dataset": dataset, "variant": variant, "seeds": [r["seed"] for r in group],
             "mean_test_accuracy": statistics.fmean(r["final_test_accuracy"] for r in group),
             "min_test_accuracy": min(r["final_test_accuracy"] for r in group),
             "max_test_accuracy": max(r["final_test_accuracy"] for r in group)}
            for (dataset, variant), group in groups.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["builtin"])
    parser.add_argument("--variants", nargs="+", default=["fixed", "float"], choices=list(VARIANTS))
    parser.add_argument("--topology", default="784-128-10")
    parser.add_argument("--options", default="{}", help="JSON dict of extra StidiConfig options for every variant")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="one run per seed (default 1)")
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--test-limit", type=int)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    extra = json.loads(args.options)
    runs = []
    for name in args.datasets:
        dataset = load_dataset(name)
        for variant in args.variants:
            for seed in args.seeds:
                settings = dict(VARIANTS[variant], **extra)
                arith = settings.pop("arith")
                learner = make_stidi_learner(arith, args.topology, seed, **settings)
                print(f"== {name} {variant} {args.topology} seed {seed}", flush=True)
                start = time.time()
                metrics = train(learner, dataset, args.epochs, seed, args.train_limit, args.test_limit,
                                progress=False)
                metrics.update(variant=variant, topology=args.topology, wall_s=round(time.time() - start, 1),
                               thresholds={str(k): v for k, v in learner.thresholds.items()})
                runs.append(metrics)
                print(f"   test {100 * metrics['final_test_accuracy']:.2f} %  "
                      f"train {metrics['train_samples_per_s']:.0f}/s  infer {metrics['infer_samples_per_s']:.0f}/s",
                      flush=True)
                os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
                with open(args.out, "w") as handle:
                    json.dump({"command": shlex.join(["python"] + sys.argv), "machine": platform.processor() or
                               platform.machine(), "python": platform.python_version(), "summary": summarize(runs),
                               "runs": runs}, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
