"""Integer building blocks of the golden models, each with a declared width.

Conventions (the bit-level spec, docs/golden-spec.md, refers to these names):
  * every value is carried in ``np.int64`` and is an integer of a declared width;
  * ``>>`` on signed values is an arithmetic shift, i.e. floor division by a power of two;
  * ``saturate(x, bits)`` clamps to the two's-complement range of ``bits`` bits and is applied only at
    the points the spec names;
  * sums of selected words (``select_sum``) are exact: each output is a sum of +-1/0-selected integers.
    They run on float64 BLAS, which is exact while every partial sum stays below 2**53 (asserted).
Nothing here multiplies one data value by another.
"""

import numpy as np

FLOAT64_EXACT = 1 << 53


def signed_range(bits: int) -> tuple[int, int]:
    """The inclusive two's-complement range of a ``bits``-bit signed word."""
    if bits < 1:
        raise ValueError(f"a signed word needs at least 1 bit, not {bits}")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x, bits: int) -> np.ndarray:
    """Clamp ``x`` to the ``bits``-bit signed range (saturation, not wrap-around)."""
    lo, hi = signed_range(bits)
    # minimum/maximum rather than np.clip: same result, a fraction of the per-call overhead
    return np.minimum(np.maximum(np.asarray(x, dtype=np.int64), lo), hi)


def fits_signed(x, bits: int) -> bool:
    lo, hi = signed_range(bits)
    x = np.asarray(x)
    return x.size == 0 or (int(x.min()) >= lo and int(x.max()) <= hi)


def select_sum(selector, words, word_bits: int | None = None) -> np.ndarray:
    """Exact ``selector @ words`` for a selector with entries in {-1, 0, +1}: add, subtract or skip.

    ``selector`` has shape (..., K) and ``words`` (K, N) int64. The result is int64. The float64
    product is exact because every term is a word or its negation and the bound below holds.
    ``word_bits`` declares the words' signed width (skips scanning them for the bound).
    """
    selector = np.asarray(selector)
    words = np.asarray(words, dtype=np.int64)
    assert selector.shape[-1] == words.shape[0], (selector.shape, words.shape)
    if words.size and selector.size:
        largest = 1 << (word_bits - 1) if word_bits else int(np.abs(words).max())
        bound = largest * words.shape[0]
        assert bound < FLOAT64_EXACT, f"select_sum bound {bound} is not exact in float64"
        assert selector.dtype == np.uint8 or np.abs(selector).max() <= 1, "select_sum takes a {-1, 0, +1} selector"
    total = selector.astype(np.float64) @ words.astype(np.float64)
    return total.astype(np.int64)


_SMALL_BIT_LENGTHS = np.array([v.bit_length() for v in range(256)], dtype=np.int64)


def bit_length(x) -> np.ndarray:
    """Number of bits of non-negative integers (0 -> 0): a leading-one detector, no logarithms."""
    x = np.asarray(x, dtype=np.int64)
    assert (x >= 0).all()
    if x.size and x.max() < len(_SMALL_BIT_LENGTHS):
        return _SMALL_BIT_LENGTHS[x]
    length = np.zeros(x.shape, dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = x >= (1 << shift)
        x = np.where(big, x >> shift, x)
        length += np.where(big, shift, 0)
    return length + (x > 0)
