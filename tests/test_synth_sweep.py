"""The sweep's bookkeeping (no tools): grid order, throughput from measured cycles, Pareto front."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("synth_sweep", Path(__file__).parent.parent / "bench" / "synth_sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def test_grid_is_every_combination_in_order():
    points = sweep.grid(["16-12-4", "196-64-10"], [24], [1, 4], ["ulx3s-85f"], [1, 2])
    assert len(points) == 8
    assert points[0] == {"topology": "16-12-4", "weight_bits": 24, "parallelism": 1, "board": "ulx3s-85f", "seed": 1}
    assert sweep.point_label(points[-1]) == "ulx3s-85f-196-64-10-W24-P4-s2"


def test_throughput_and_pareto_front():
    rows = [dict(topology="t", parallelism=1, label="a", logic_used=100, fmax_mhz=50.0),
            dict(topology="t", parallelism=4, label="b", logic_used=300, fmax_mhz=40.0),
            dict(topology="t", parallelism=16, label="c", logic_used=900, fmax_mhz=20.0),   # dominated by b
            dict(topology="u", parallelism=1, label="d", logic_used=50, fmax_mhz=None),     # not placed
            dict(topology="t", parallelism=2, label="e", refused="does not fit")]
    sweep.add_throughput(rows, {("t", 1): 10_000, ("t", 4): 2_000, ("t", 16): 1_000})
    assert [r["train_samples_per_s"] for r in rows] == [5000.0, 20000.0, 20000.0, None, None]
    assert [r["label"] for r in sweep.pareto_front(rows)] == ["a", "b"]
    rows.append(dict(topology="u", parallelism=2, label="f", logic_used=10_000, fmax_mhz=10.0,
                     train_samples_per_s=1.0))     # alone for its topology: on its own front
    assert [r["label"] for r in sweep.pareto_front(rows)] == ["a", "b", "f"]
