"""Yosys `proc; flatten; opt; stat` of the generated desire-BP core (before technology mapping).

Writes results/rtl/yosys_stat_<topology>_P<P>.json with every cell count and the forbidden
(multiplier/divider/modulo) ones. Usage: python -m ... or python bench/rtl_yosys_stat.py 196-64-10 16
"""

import json
import sys
import time
from pathlib import Path

from mfsnn.golden.desire_config import DesireConfig, parse_topology
from mfsnn.rtl.synth_check import cell_stats, forbidden_cells


def main(argv):
    topo = parse_topology(argv[1] if len(argv) > 1 else "196-64-10")
    parallelism = int(argv[2]) if len(argv) > 2 else 16
    cfg = DesireConfig(topology=topo)
    start = time.monotonic()
    stats = cell_stats(cfg, parallelism, debug=False)
    out = {"topology": "-".join(map(str, topo)), "parallelism": parallelism, "debug": False,
           "script": "proc; flatten; opt; stat", "forbidden": forbidden_cells(stats), "cells": stats,
           "seconds": round(time.monotonic() - start, 1)}
    path = Path("results/rtl") / f"yosys_stat_{out['topology']}_P{parallelism}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: out[k] for k in ("topology", "parallelism", "forbidden", "seconds")}))
    print("memories:", stats.get("$memwr_v2"), "adders:", stats.get("$add"), "subtractors:", stats.get("$sub"))


if __name__ == "__main__":
    main(sys.argv)
