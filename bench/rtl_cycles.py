"""Benchmark (not a test): cycles per training and per inference sample of the desire-BP RTL,
measured in simulation, next to the analytic lower bound ops/P of the same samples; and the
simulation speed (cycles/s) of Icarus and Verilator.

Writes results/rtl/cycles.json. Usage (nice it: the machine is shared):
  nice python bench/rtl_cycles.py [--quick] [--build-dir build/sim]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mfsnn.golden.desire_config import DesireConfig, init_weights
from mfsnn.sim.cost import lower_bound, sample_ops
from mfsnn.sim.runner import run_bitexact, simulator_available


def stimulus(cfg, n, seed):
    if cfg.topology[0] in (196, 784):
        from mfsnn.golden.data import input_pixels, load_dataset
        ds = load_dataset("builtin")
        split = ds.train if hasattr(ds, "train") else ds[0]
        images, labels = split.images[:n], split.labels[:n]
        return input_pixels(images, cfg.topology[0]), np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, cfg.topology[0])).astype(np.uint8)
    images[rng.random(images.shape) < 0.5] = 0
    return images, rng.integers(0, cfg.topology[-1], n)


def measure(cfg, parallelism, simulator, build_dir, n_train, n_infer, debug):
    n = n_train + n_infer
    images, labels = stimulus(cfg, n, 1)
    weights = init_weights(cfg)
    train = [True] * n_train + [False] * n_infer
    start = time.monotonic()
    report = run_bitexact(cfg, weights, images, labels, simulator, build_dir, seed=1, train=train,
                          parallelism=parallelism, debug=debug)
    wall = time.monotonic() - start
    # bounds of the same samples (weights evolve with training: follow the golden model)
    from mfsnn.golden import desire as golden
    w = [x.copy() for x in weights]
    bounds_train, bounds_infer, step = [], [], 0
    for q in range(n):
        ops = sample_ops(cfg, w, images[q], int(labels[q]), step, train[q])
        (bounds_train if train[q] else bounds_infer).append(lower_bound(ops, parallelism))
        if train[q]:
            w, _ = golden.train_sample(cfg, w, images[q], int(labels[q]), step, 0)
            step += 1

    def summary(cycles, bounds):
        if not cycles:
            return None
        c, b = float(np.mean(cycles)), float(np.mean(bounds))
        return {"cycles_mean": round(c, 1), "cycles": [int(x) for x in cycles],
                "bound_ops_over_P_mean": round(b, 1), "ratio": round(c / b, 2)}

    return {
        "topology": "-".join(map(str, cfg.topology)), "P": parallelism, "simulator": simulator, "debug_tap": debug,
        "bitexact_ok": report.ok, "mismatch": report.mismatch,
        "train": summary(report.cycles_train, bounds_train), "infer": summary(report.cycles_infer, bounds_infer),
        "sim_cycles": report.sim_cycles, "sim_seconds": round(report.sim_seconds, 2),
        "sim_cycles_per_s": round(report.sim_cycles / report.sim_seconds) if report.sim_seconds else None,
        "wall_seconds_incl_build": round(wall, 1),
    }


def markdown_table(data) -> str:
    """The cycles table of docs/rtl.md from the JSON this script writes."""
    rows = ["| topology | P | train cycles | train bound ops/P | ratio | infer cycles | infer bound | ratio | sim | cycles/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in data["runs"]:
        tr, inf = r["train"] or {}, r["infer"] or {}
        rows.append(f"| {r['topology']} | {r['P']} | {tr.get('cycles_mean', '-')} | {tr.get('bound_ops_over_P_mean', '-')} "
                    f"| {tr.get('ratio', '-')} | {inf.get('cycles_mean', '-')} | {inf.get('bound_ops_over_P_mean', '-')} "
                    f"| {inf.get('ratio', '-')} | {r['simulator']} | {r['sim_cycles_per_s']} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16-12-4 only")
    ap.add_argument("--build-dir", default="build/sim")
    ap.add_argument("--out", default="results/rtl/cycles.json")
    ap.add_argument("--verilator", action="store_true", help="also measure Verilator speed (builds take minutes)")
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    ap.add_argument("--verilator-only", action="store_true", help="only the Verilator runs, appended to --out")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return
    runs = []
    if args.verilator_only:
        args.verilator = True
        runs = json.loads(Path(args.out).read_text())["runs"] if Path(args.out).exists() else []
        runs = [r for r in runs if r["simulator"] != "verilator"]
    plan = [] if args.verilator_only else [((16, 12, 4), P, 4, 2) for P in (1, 4, 16)]
    if not args.quick and not args.verilator_only:
        plan += [((196, 64, 10), P, 2, 1) for P in (1, 4, 16)]
    for topo, P, n_train, n_infer in plan:
        cfg = DesireConfig(topology=topo)
        res = measure(cfg, P, "icarus", args.build_dir, n_train, n_infer, debug=False)
        print(json.dumps({k: res[k] for k in ("topology", "P", "train", "infer", "sim_cycles_per_s")}), flush=True)
        runs.append(res)
    if args.verilator and simulator_available("verilator"):
        for topo, P, n_train, n_infer in [((196, 64, 10), 16, 4, 2)]:
            res = measure(DesireConfig(topology=topo), P, "verilator", args.build_dir, n_train, n_infer, debug=False)
            print(json.dumps({k: res[k] for k in ("topology", "P", "simulator", "sim_cycles_per_s")}), flush=True)
            runs.append(res)
    out = {"note": "cycles = core busy cycles per sample (pixel loading excluded); bound = analytic ops/P "
                   "(sim/cost.py, notes section 10 model) for the same sample; ratio = cycles/bound",
           "host": platform.node(), "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
