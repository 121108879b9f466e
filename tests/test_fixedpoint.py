"""Property tests of the integer primitives against Python's exact integers (the exact sums:
test_integer_sums.py)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfsnn.golden.fixedpoint import bit_length, saturate, signed_range

ints = st.integers(min_value=-(1 << 40), max_value=1 << 40)


@given(ints, st.integers(min_value=2, max_value=40))
def test_saturate_is_clamp(x, bits):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert int(saturate(x, bits)) == min(max(x, lo), hi)
    assert signed_range(bits) == (lo, hi)


@given(ints, st.integers(min_value=0, max_value=20))
def test_arithmetic_shift_is_floor(x, k):
    assert int(np.int64(x) >> k) == math.floor(Fraction(x, 2 ** k))


@given(ints)
def test_decay_by_shift_is_ceil_three_quarters(v):
    # V - (V >> 2) == ceil(0.75 V) for both signs (notes 9.6): the spec's decay rounding.
    assert int(np.int64(v) - (np.int64(v) >> 2)) == math.ceil(Fraction(3 * v, 4))


@given(st.integers(min_value=0, max_value=(1 << 62)))
def test_bit_length_is_leading_one_position(x):
    assert int(bit_length(np.array([x]))[0]) == x.bit_length()


def test_bit_length_refuses_negative_numbers():
    with pytest.raises(ValueError, match="non-negative integers, not -3"):
        bit_length(np.array([4, -3]))
