"""Hidden-layer activity of trained STiDi-BP FC nets: how many hidden neurons fire, and when.

    MFSNN_DATA=/work/shared/datasets python bench/stidi_activity.py --dataset mnist \
        --run fixed '{}' --run fixed-max '{"error_norm": "max", "levels": 3, "init_bits": [14, 13]}' \
        --run float '{}' --out results/stidi/activity_784-128-10.json

Each ``--run NAME OPTIONS`` trains ``--topology`` for one epoch (seed ``--seed``; NAME starts with
``fixed`` or ``float`` for the arithmetic, OPTIONS is a JSON dict of StidiConfig settings), then runs
the forward pass on the first ``--probe`` test images and records, per weight layer: the mean
fraction of neurons that fire per sample, the median spike time of those that fire, the number of
neurons that never fire, and the fraction of negative latent weights. One JSON with the command.
"""

import argparse
import json
import os
import platform
import shlex
import sys

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

from mfsnn.golden import stidi_fixed  # noqa: E402
from mfsnn.golden.data import load_dataset  # noqa: E402
from mfsnn.golden.stidi import make_stidi_learner  # noqa: E402
from mfsnn.golden.train import train  # noqa: E402


def activity(learner, images) -> list:
    """Per weight layer: firing statistics of the forward pass over ``images``."""
    times_by_layer = {l: [] for l in learner.layers}
    for t0 in learner.encode(images):
        times, _, _ = stidi_fixed.forward(learner, t0)
        for l in learner.layers:
            times_by_layer[l].append(times[l].reshape(-1))
    rows = []
    for l in learner.layers:
        times = np.array(times_by_layer[l])                        # (samples, neurons)
        fired = times < learner.T
        rows.append({"layer": l, "neurons": times.shape[1],
                     "fire_fraction": float(fired.mean()),
                     "median_spike_time": float(np.median(times[fired])) if fired.any() else None,
                     "never_fire": int((~fired.any(axis=0)).sum()),
                     "negative_weight_fraction": float((learner.w[l] < 0).mean())})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="builtin")
    parser.add_argument("--topology", default="784-128-10")
    parser.add_argument("--run", nargs=2, action="append", metavar=("NAME", "OPTIONS"), required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--probe", type=int, default=1000, help="test images to measure on (default 1000)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    results = []
    for name, options in args.run:
        arith = "float" if name.startswith("float") else "fixed"
        learner = make_stidi_learner(arith, args.topology, args.seed, **json.loads(options))
        metrics = train(learner, dataset, 1, args.seed, progress=False)
        layers = activity(learner, dataset.test.images[:args.probe])
        results.append({"name": name, "arith": arith, "options": json.loads(options),
                        "test_accuracy": metrics["final_test_accuracy"], "layers": layers})
        hidden = layers[0]
        print(f"{name}: test {100 * metrics['final_test_accuracy']:.2f} %  hidden fire "
              f"{100 * hidden['fire_fraction']:.1f} %  median t {hidden['median_spike_time']}", flush=True)
        with open(args.out, "w") as handle:
            json.dump({"command": shlex.join(["python"] + sys.argv), "machine": platform.machine(),
                       "dataset": dataset.name, "topology": args.topology, "seed": args.seed,
                       "probe_images": args.probe, "runs": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
