"""The STiDi-BP cycles benchmark (bench/stidi_cycles.py): its analytic bound on hand cases, and on
the RTL its forward walk term equals the cycles the core walks its step lists and its backward term
the cycles the core updates weight words (so the probe, the phase names and the bound still describe
the core)."""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).parent.parent / "bench" / "stidi_cycles.py"
spec = importlib.util.spec_from_file_location("stidi_cycles", BENCH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# 4-3-2, T = 5: input spikes before T-1 = 4 at t = 0, 3 (S0 = 2); hidden at 1, 2 (S1 = 2, neuron 1
# silent); outputs at 3 and silent
SIZES, T = (4, 3, 2), 5
TIMES = [np.array([0, 3, 4, 5]), np.array([1, 5, 2]), np.array([3, 5])]
# output error on both outputs; hidden error only on neuron 2 (t = 2)
ERRORS = {2: np.array([1, -1]), 1: np.array([0, 0, 1])}


@pytest.mark.parametrize("P,errors,keep,expected", [
    # inference: forward [B0 + B1 (S0 + T)] + [B1 + early exit] = [2 + 2*7] + [2 + 6]: the one output
    # block stops at its spike at 3, so it walks the hidden spikes at 1, 2 and steps 0..3; decision B2
    (2, None, None, {"forward": 24, "decision": 1, "targets": 0, "backward": 0, "quantise": 0, "total": 25}),
    # P = 1: block 0 stops at 3, block 1 (silent) at the horizon 3 too: [4 + 3*7] + [3 + 2*(2 + 4)]
    (1, None, None, {"forward": 40, "decision": 2, "targets": 0, "backward": 0, "quantise": 0, "total": 42}),
    # training never exits early: forward [2 + 2*7] + [2 + 1*7]; a correct sample adds the targets pass
    (2, {}, None, {"forward": 25, "decision": 1, "targets": 1, "backward": 0, "quantise": 0, "total": 27}),
    # layer 2: hidden pres 0 and 2 fired, the one output block has an error post at 5 >= 1, 2: 2 words;
    # layer 1: inputs at 0 and 3 (not 4 = T-1), block 1's error post fires at 2: only t = 0 is early
    # enough: 1 word; hidden D quantised in 3 passes over B1 = 2 words
    (2, ERRORS, None, {"forward": 25, "decision": 1, "targets": 1, "backward": 3, "quantise": 6, "total": 36}),
    # dropout keeps hidden neuron 2 out of layer 2's update
    (2, ERRORS, {1: np.array([True, True, False])},
     {"forward": 25, "decision": 1, "targets": 1, "backward": 2, "quantise": 6, "total": 35}),
    # P = 1: [4 + 3*7] + [3 + 2*7]; layer 2: 2 pres x 2 error posts at or after them; layer 1: 1
    (1, ERRORS, None, {"forward": 42, "decision": 2, "targets": 2, "backward": 5, "quantise": 9, "total": 60}),
])
def test_cycle_bound_hand_cases(P, errors, keep, expected):
    bound = bench.cycle_bound(SIZES, T, P, TIMES, errors, keep)
    assert {k: bound[k] for k in expected} == expected, bound
    assert bound["result"] == 0


def test_cycle_bound_refuses_times_of_another_network():
    with pytest.raises(ValueError, match="one array per stage"):
        bench.cycle_bound(SIZES, T, 2, TIMES[:2])


BLOCKS_BEYOND = "BW_BLOCK beyond the bound's words (blocks with an error post at or after t_j)"


def test_bound_walk_and_update_words_equal_the_core():
    """16-12-4, P = 4, on the RTL (bit-exact checked): one error and one inference sample. The core
    walks its step lists in the bound's forward walk cycles and updates exactly the bound's words
    (one cycle each); no step-list clearing loop is left."""
    args = argparse.Namespace(error=1, correct=0, infer=1, pretrain=0, candidates=20, seed=1)
    run = bench.measure("16-12-4", 4, args)
    assert run["samples_found"] == {"error": 1, "correct": 0, "inference": 1}
    for row in run["samples"]:
        assert row["excess_by_cause"]["FW_WALK beyond B(l) * (S + T)"] == 0, row["states"]
        assert row["excess_by_cause"][BLOCKS_BEYOND] == 0, row["states"]
        assert not any(state.startswith("FW_CLEAR") for state in row["states"]), row["states"]
        assert row["cycles"] > row["bound"]["total"] > 0
    error = run["samples"][0]
    assert error["phases"]["backward"] > 0 and error["bound"]["backward"] > 0
    assert sum(n for state, n in error["states"].items() if state.startswith("BW_BLOCK")) == error["bound"]["backward"]
