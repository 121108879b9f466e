"""Training and inference speed of the desire-BP golden models on one core, with a profile.

    python bench/desire_speed.py --out results/desire/speed.json

For each topology: samples/s of online training (after a warm-up) and of batched inference on the
built-in images, plus the top functions of a cProfile run (where the time goes). Reports the load
average so figures taken on a busy machine can be recognised, and the same rates per second of this
process's CPU time (``*_per_cpu_s``), which a busy machine slows much less than the wall clock. Each
case is timed ``--repeat`` times (a fresh learner each time) and the fastest run is reported.

    python bench/desire_speed.py --out /tmp/speed.json --arith fixed --topology 784-128-10
"""

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from mfsnn.golden.data import load_dataset  # noqa: E402
from mfsnn.golden.learners import make_learner  # noqa: E402

CASES = {"784-128-10": 1500, "784-1600-800-10": 150}


def _timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(topology: str, arith: str, samples: int, dataset, repeat: int) -> dict:
    images, labels, test = dataset.train.images, dataset.train.labels, dataset.test.images
    load_before = os.getloadavg()[0]
    train, infer = [], []
    for _ in range(repeat):           # the same samples from the same start each time; the best counts
        learner = make_learner("desire", arith, topology, seed=1)
        learner.train_samples(images[:100], labels[:100], 0, 0)               # warm-up
        train.append(_timed(
            lambda: learner.train_samples(images[100:100 + samples], labels[100:100 + samples], 100, 0)))
        infer.append(_timed(lambda: [learner.predict(test[lo:lo + 500]) for lo in range(0, len(test), 500)]))
    load_after = os.getloadavg()[0]
    (train_wall, _), (infer_wall, _) = min(train), min(infer)
    train_cpu, infer_cpu = min(cpu for _, cpu in train), min(cpu for _, cpu in infer)
    profile = cProfile.Profile()
    profile.enable()
    learner.train_samples(images[:min(samples, 300)], labels[:min(samples, 300)], 0, 0)
    profile.disable()
    stats = pstats.Stats(profile)
    total = sum(entry[2] for entry in stats.stats.values())
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:8]
    hot = [{"function": f"{func[0].split('/')[-1]}:{func[2]}", "share_of_time": round(entry[2] / total, 3)}
           for func, entry in top]
    return {"topology": topology, "arith": arith, "train_samples": samples, "repeats": repeat,
            "train_samples_per_s": round(samples / train_wall, 1),
            "infer_samples_per_s": round(len(test) / infer_wall, 1),
            "train_samples_per_cpu_s": round(samples / train_cpu, 1),
            "infer_samples_per_cpu_s": round(len(test) / infer_cpu, 1),
            "load_average_1min": [load_before, load_after], "profile_tottime_top": hot}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--arith", nargs="+", default=["fixed", "float"])
    parser.add_argument("--topology", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--repeat", type=int, default=3,
                        help="time each case this many times and keep the fastest (default 3)")
    args = parser.parse_args()
    dataset = load_dataset("builtin")
    results = []
    for topology in args.topology:
        samples = CASES[topology]
        for arith in args.arith:
            result = measure(topology, arith, samples, dataset, args.repeat)
            print(f"{topology} {arith}: train {result['train_samples_per_s']}/s "
                  f"({result['train_samples_per_cpu_s']}/CPU s), infer {result['infer_samples_per_s']}/s "
                  f"({result['infer_samples_per_cpu_s']}/CPU s), load {result['load_average_1min']}", flush=True)
            results.append(result)
    report = {"command": " ".join(["python"] + sys.argv), "date": time.strftime("%Y-%m-%d"),
              "machine": platform.machine(), "python": platform.python_version(),
              "load_average_1min": os.getloadavg()[0], "threads": os.environ["OPENBLAS_NUM_THREADS"],
              "results": results}
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
