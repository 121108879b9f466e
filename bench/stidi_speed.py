"""Training / inference throughput of the STiDi-BP golden models (one core), FC and CSNN.

    nice -n 10 python bench/stidi_speed.py --out results/stidi/speed.json

For each (topology, arith): warm up on the first samples of the built-in set, then time
``train_samples`` on the next N samples (file order; the updating fraction is reported, since only
samples with a nonzero output error run the backward) and ``predict`` on N test images.
Writes one JSON with the command, the machine load and every measurement.
"""

import argparse
import json
import os
import platform
import sys
import time

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

from mfsnn.golden.data import load_dataset  # noqa: E402
from mfsnn.golden.stidi import CSNN_FPGA, CSNN_LARGE, make_stidi_learner  # noqa: E402

CASES = [("784-128-10", "fixed"), ("784-128-10", "float"), ("784-128-10", "float-real"),
         (CSNN_FPGA, "fixed"), (CSNN_FPGA, "float"), (CSNN_LARGE, "fixed")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000, help="timed training samples per case (FC)")
    parser.add_argument("--conv-samples", type=int, default=300, help="timed training samples per conv case")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = load_dataset("builtin")
    rows = []
    for topology, variant in CASES:
        arith = variant.split("-")[0]
        options = {"forward": "real"} if variant.endswith("real") else {}
        learner = make_stidi_learner(arith, topology, 1, **options)
        n = args.conv_samples if "c" in topology else args.samples
        w = args.warmup if "c" not in topology else args.warmup // 5
        learner.train_samples(data.train.images[:w], data.train.labels[:w], 0, 0)
        images, labels = data.train.images[w:w + n], data.train.labels[w:w + n]
        start = time.perf_counter()
        correct = learner.train_samples(images, labels, w, 0)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        learner.predict(data.test.images[:n])
        infer_s = time.perf_counter() - start
        row = {"topology": topology, "variant": variant, "train_samples": n,
               "train_samples_per_s": round(n / train_s, 1), "infer_samples_per_s": round(n / infer_s, 1),
               "online_accuracy_in_window": round(float(np.mean(correct)), 3), "warmup_samples": w}
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"command": " ".join(["python"] + sys.argv), "machine": platform.processor() or platform.machine(),
                   "python": platform.python_version(), "numpy": np.__version__,
                   "loadavg_at_end": os.getloadavg(), "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
