"""Accuracy of desire BP, float reference vs integer variants, one run per (dataset, variant).

    python bench/desire_accuracy.py --datasets mnist fashion-mnist --epochs 1 \
        --out results/desire/accuracy.json

Writes one JSON with every run's metrics (and the command line). Full-data runs need MFSNN_DATA.
"""

import argparse
import json
import os
import platform
import sys
import time

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from mfsnn.golden.data import load_dataset  # noqa: E402
from mfsnn.golden.learners import make_learner  # noqa: E402
from mfsnn.golden.train import train  # noqa: E402

VARIANTS = {
    "float": dict(arith="float"),
    "fixed-w24-pow2": dict(arith="fixed", weight_bits=24, error_mode="pow2"),
    "fixed-w24-exact": dict(arith="fixed", weight_bits=24, error_mode="exact"),
    "fixed-w16-pow2-nearest": dict(arith="fixed", weight_bits=16, error_mode="pow2", rounding="nearest"),
    "fixed-w16-pow2-stochastic": dict(arith="fixed", weight_bits=16, error_mode="pow2", rounding="stochastic"),
    "fixed-w12-pow2-stochastic": dict(arith="fixed", weight_bits=12, error_mode="pow2", rounding="stochastic"),
    # the integer learning rate is a power of two: 2^-17 = 0.76e-5 and 2^-16 = 1.5e-5 bracket the float 1e-5
    "float-lr2^-17": dict(arith="float", float_lr=2.0 ** -17),
    "fixed-w24-exact-lr16": dict(arith="fixed", weight_bits=24, error_mode="exact", lr_shift=16),
    "fixed-w16-exact-stochastic": dict(arith="fixed", weight_bits=16, error_mode="exact", rounding="stochastic"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["builtin"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--topology", default="784-128-10")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--test-limit", type=int)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = []
    for name in args.datasets:
        dataset = load_dataset(name)
        for variant in args.variants:
            settings = dict(VARIANTS[variant])
            arith = settings.pop("arith")
            learner = make_learner("desire", arith, args.topology, args.seed, settings.pop("weight_bits", None),
                                   **settings)
            print(f"== {name} {variant}", flush=True)
            metrics = train(learner, dataset, args.epochs, args.seed, args.train_limit, args.test_limit,
                            progress=False)
            metrics.update(variant=variant, topology=args.topology)
            runs.append(metrics)
            print(f"   test {100 * metrics['final_test_accuracy']:.2f} %  "
                  f"train {metrics['train_samples_per_s']:.0f}/s", flush=True)
            with open(args.out, "w") as handle:       # rewritten after every run: partial results survive
                json.dump({"command": " ".join(["python"] + sys.argv), "machine": platform.processor() or
                           platform.machine(), "date": time.strftime("%Y-%m-%d"), "runs": runs}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
