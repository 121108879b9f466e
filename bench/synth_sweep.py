"""Design-space sweep of the desire-BP core on real FPGA builds, run on a Dask cluster.

Every point of the grid topology x weight bits x P x board x nextpnr seed is built by
``mfsnn.rtl.synth_flow.synthesize`` (Yosys + nextpnr, minutes of single-threaded tool time each), as
one Dask task: a ``LocalCluster`` of ``--workers`` single-threaded processes by default,
``--scheduler tcp://host:8786`` for an existing cluster. Points the fit pre-check refuses are recorded
as refused, with its numbers. Writes one JSON (every point's figures, parsed from the tools' reports,
plus the command and the machine load) and a plot: LUTs, block RAM and Fmax per configuration, and
training throughput (measured cycles per training sample from results/rtl/cycles.json / Fmax)
against LUTs with its Pareto front.

    python bench/synth_sweep.py --topologies 16-12-4 196-64-10 --parallelism 1 4 --boards ulx3s-85f \\
        --seeds 1 2 --out results/synth/sweep.json
"""

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CYCLES = ROOT / "results" / "rtl" / "cycles.json"


def grid(topologies, weight_bits, parallelism, boards, seeds) -> list[dict]:
    """Every combination, in a stable order (the JSON lists points in this order)."""
    return [{"topology": t, "weight_bits": w, "parallelism": p, "board": b, "seed": s}
            for t, w, p, b, s in itertools.product(topologies, weight_bits, parallelism, boards, seeds)]


def point_label(point: dict) -> str:
    return f"{point['board']}-{point['topology']}-W{point['weight_bits']}-P{point['parallelism']}-s{point['seed']}"


def build_point(point: dict, build_root: str) -> dict:
    """One build (runs on a Dask worker): the point plus the report's figures, or why it was refused."""
    from mfsnn.golden.desire_config import DesireConfig, parse_topology
    from mfsnn.rtl.core import CoreParams
    from mfsnn.rtl.synth_flow import BOARDS, SynthError, synthesize

    cfg = DesireConfig.for_weight_bits(point["weight_bits"], topology=parse_topology(point["topology"]))
    params = CoreParams(cfg, point["parallelism"])
    row = dict(point, label=point_label(point))
    try:
        report = synthesize(params, BOARDS[point["board"]], Path(build_root) / row["label"], seed=point["seed"],
                            log=lambda line: None)
    except SynthError as refusal:
        return dict(row, refused=str(refusal))
    summary = report["summary"]
    fmax = [entry["achieved_mhz"] for entry in summary.get("fmax", {}).values()]
    logic, block_ram = summary.get("logic") or {}, summary.get("block_ram") or {}
    return dict(row, logic_used=logic.get("used"), logic_available=logic.get("available"),
                logic_bel=logic.get("bel"), block_ram_used=block_ram.get("used"),
                block_ram_available=block_ram.get("available"), dsp=summary.get("dsp"),
                fmax_mhz=min(fmax) if fmax else None, memory_bits=summary["memory_bits"],
                problems=report["problems"], wall_seconds=report["wall_seconds"],
                loadavg=report["machine"]["loadavg_end"])


def measured_cycles(path=CYCLES) -> dict:
    """(topology, P) -> mean cycles per training sample, from the cycle benchmark (Icarus)."""
    if not Path(path).is_file():
        return {}
    runs = json.loads(Path(path).read_text())["runs"]
    return {(run["topology"], run["P"]): run["train"]["cycles_mean"] for run in runs if run.get("bitexact_ok")}


def add_throughput(rows: list[dict], cycles: dict) -> None:
    """Training samples/s = Fmax / measured cycles per training sample, where both are known."""
    for row in rows:
        per_sample = cycles.get((row["topology"], row["parallelism"]))
        row["train_cycles_per_sample"] = per_sample
        fmax = row.get("fmax_mhz")
        row["train_samples_per_s"] = round(fmax * 1e6 / per_sample, 1) if fmax and per_sample else None


def pareto_front(rows: list[dict]) -> list[dict]:
    """Per topology, the rows no other row of it beats on both fewer logic cells and more training
    samples/s (ties kept): the configurations worth building for that network."""
    known = [r for r in rows if r.get("train_samples_per_s") and r.get("logic_used")]

    def beaten(r):
        return any(o["topology"] == r["topology"] and o["logic_used"] <= r["logic_used"]
                   and o["train_samples_per_s"] >= r["train_samples_per_s"]
                   and (o["logic_used"], o["train_samples_per_s"]) != (r["logic_used"], r["train_samples_per_s"])
                   for o in known)

    return sorted((r for r in known if not beaten(r)), key=lambda r: (r["topology"], r["logic_used"]))


def plot(rows: list[dict], front: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    built = [r for r in rows if "refused" not in r]
    labels = sorted({r["label"].rsplit("-s", 1)[0] for r in built})
    x = {label: k for k, label in enumerate(labels)}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, key, title in ((axes[0][0], "logic_used", "logic cells / LUTs placed"),
                           (axes[0][1], "block_ram_used", "block RAMs (EBR / DP16KD) placed"),
                           (axes[1][0], "fmax_mhz", "Fmax (MHz), one dot per nextpnr seed")):
        ax.scatter([x[r["label"].rsplit("-s", 1)[0]] for r in built if r.get(key) is not None],
                   [r[key] for r in built if r.get(key) is not None])
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax = axes[1][1]
    through = [r for r in built if r.get("train_samples_per_s")]
    ax.scatter([r["logic_used"] for r in through], [r["train_samples_per_s"] for r in through], label="builds")
    for topology in sorted({r["topology"] for r in front}):
        line = [r for r in front if r["topology"] == topology]
        ax.plot([r["logic_used"] for r in line], [r["train_samples_per_s"] for r in line], ".-",
                label=f"Pareto front {topology}")
    for r in front:
        ax.annotate(r["label"], (r["logic_used"], r["train_samples_per_s"]), fontsize=6)
    ax.set_xlabel("logic cells / LUTs placed")
    ax.set_yscale("log")
    ax.set_ylabel("training samples/s (Fmax / measured cycles)")
    ax.set_title("training throughput vs logic")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _commit() -> str | None:
    """The checkout's commit (and whether its rtl/ has uncommitted changes): what was built."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "rtl", "golden"], cwd=ROOT, capture_output=True,
                               text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + (" + uncommitted rtl/golden changes" if dirty.stdout.strip() else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topologies", nargs="+", default=["196-64-10"])
    parser.add_argument("--weight-bits", nargs="+", type=int, default=[24])
    parser.add_argument("--parallelism", nargs="+", type=int, default=[1])
    parser.add_argument("--boards", nargs="+", default=["ulx3s-85f"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 "
                                                                "(default: a LocalCluster on this machine)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                        help="LocalCluster worker processes, one thread each (default: cores - 1)")
    parser.add_argument("--build-dir", default="build/sweep", metavar="DIR")
    parser.add_argument("--out", default="results/synth/sweep.json", metavar="FILE")
    parser.add_argument("--from-json", metavar="FILE", help="no builds: recompute throughput, Pareto front "
                                                            "and plot of an earlier sweep's JSON into --out")
    args = parser.parse_args(argv)
    if args.from_json:
        earlier = json.loads(Path(args.from_json).read_text())
        add_throughput(earlier["points"], measured_cycles())
        front = pareto_front(earlier["points"])
        earlier["pareto_front"] = [r["label"] for r in front]
        Path(args.out).write_text(json.dumps(earlier, indent=2) + "\n")
        plot(earlier["points"], front, Path(args.out).with_suffix(".png"))
        print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")
        return 0
    from mfsnn.golden.desire_config import WEIGHT_PROFILES, parse_topology
    from mfsnn.rtl.synth_flow import BOARDS

    for topology in args.topologies:
        try:
            parse_topology(topology)
        except ValueError as error:
            parser.error(f"--topologies {topology}: {error}")
    for name, values, allowed in (("--weight-bits", args.weight_bits, WEIGHT_PROFILES),
                                  ("--boards", args.boards, BOARDS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            parser.error(f"{name} {' '.join(map(str, bad))}: choose from {', '.join(map(str, allowed))}")
    if any(p < 1 or p & (p - 1) for p in args.parallelism):
        parser.error("--parallelism: powers of two only")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        parser.error("dask.distributed is not installed (pip install 'mfsnn[synth]')")

    points = grid(args.topologies, args.weight_bits, args.parallelism, args.boards, args.seeds)
    build_root = str(Path(args.build_dir).resolve())
    started, load_start = time.monotonic(), os.getloadavg()
    cluster = None if args.scheduler else LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                                       processes=True, dashboard_address=None)
    rows = []
    with Client(args.scheduler or cluster) as client:
        print(f"{len(points)} builds on {client.scheduler.address} "
              f"({len(client.scheduler_info()['workers'])} workers)", flush=True)
        futures = [client.submit(build_point, point, build_root, key=point_label(point), pure=False)
                   for point in points]
        for done, future in enumerate(as_completed(futures), start=1):
            row = future.result()
            rows.append(row)
            figure = row.get("refused") or f"{row.get('logic_used')} logic, Fmax {row.get('fmax_mhz')} MHz"
            print(f"[{done}/{len(points)}] {row['label']}: {figure}", flush=True)
    if cluster is not None:
        cluster.close()
    rows.sort(key=lambda r: points.index({k: r[k] for k in points[0]}))
    add_throughput(rows, measured_cycles())
    front = pareto_front(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": shlex.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "commit": _commit(),
        "scheduler": args.scheduler or f"LocalCluster({args.workers} workers)",
        "wall_seconds": round(time.monotonic() - started, 1),
        "loadavg_start": [round(v, 2) for v in load_start], "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "cycles_source": str(CYCLES.relative_to(ROOT)),
        "points": rows, "pareto_front": [r["label"] for r in front],
    }, indent=2) + "\n")
    plot(rows, front, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
