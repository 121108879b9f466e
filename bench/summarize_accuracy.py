"""Markdown table of accuracy-benchmark JSON files: one row per (dataset, variant), one column per seed.

    python bench/summarize_accuracy.py results/desire/accuracy*.json
"""

import json
import sys
from collections import defaultdict


def main(paths) -> int:
    table, seeds = defaultdict(dict), set()
    for path in paths:
        with open(path) as handle:
            report = json.load(handle)
        for run in report["runs"]:
            key = (run["dataset"], run["topology"], run["variant"], run["epochs"])
            table[key][run["seed"]] = run["final_test_accuracy"]
            seeds.add(run["seed"])
    seeds = sorted(seeds)
    print("| dataset | topology | variant | epochs | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("|---|---|---|---:|" + "---:|" * (len(seeds) + 1))
    for (dataset, topology, variant, epochs), by_seed in sorted(table.items()):
        cells = [f"{100 * by_seed[s]:.2f}" if s in by_seed else "" for s in seeds]
        mean = 100 * sum(by_seed.values()) / len(by_seed)
        print(f"| {dataset} | {topology} | {variant} | {epochs} | " + " | ".join(cells) + f" | {mean:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
