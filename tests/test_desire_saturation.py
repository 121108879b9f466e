"""The membrane saturates at every decay shift: the golden model's shortcut that skips saturation
(when it provably cannot happen) must hold for DS >= 3 too, where |V| grows to 2**DS (max|I| + 1)."""

import numpy as np
import pytest

from mfsnn.golden import desire
from mfsnn.golden.desire_config import DesireConfig
from mfsnn.golden.fixedpoint import saturate, signed_range


def saturating_membranes(cfg, weights, pixels):
    """Layer 1's membranes by the spec's loop, saturating at every step (no shortcut)."""
    spikes = desire.encode(cfg, pixels).astype(np.int64)
    v, out = np.zeros(weights.shape[0], dtype=np.int64), []
    for t in range(cfg.time_steps):
        current = np.array([int(weights[j][spikes[t] == 1].sum()) for j in range(weights.shape[0])])
        v = saturate(v - (v >> cfg.decay_shift) + current, cfg.membrane_bits)
        v = np.where(v >= cfg.theta, v - cfg.theta, v)
        out.append(v)
    return np.array(out)


@pytest.mark.parametrize("decay_shift", [1, 2, 3, 4])
@pytest.mark.parametrize("sign", [1, -1])
def test_membrane_saturates_at_any_decay_shift(decay_shift, sign):
    cfg = DesireConfig(topology=(48, 4, 3), decay_shift=decay_shift)
    lo, hi = signed_range(cfg.weight_bits)
    w1 = np.full((4, 48), hi if sign > 0 else lo, dtype=np.int64)
    w2 = np.zeros((3, 4), dtype=np.int64)
    pixels = np.full(48, 255, dtype=np.uint8)
    got = desire.forward(cfg, [w1, w2], desire.encode(cfg, pixels)).v[1]
    expected = saturating_membranes(cfg, w1, pixels)
    v_lo, v_hi = signed_range(cfg.membrane_bits)
    assert got.min() >= v_lo and got.max() <= v_hi
    assert np.array_equal(got, expected)
