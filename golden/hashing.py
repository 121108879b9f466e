"""Multiplication-free integer randomness shared by the golden models and the RTL.

``mix32`` is Robert Jenkins' 32-bit integer hash (adds, xors and shifts mod 2**32).
Randomness is a pure function of its key, e.g. ``mix32(mix32(seed ^ q) ^ (layer << 16) ^ n)``,
so no result ever depends on the order in which values are drawn.

``xorshift32`` is Marsaglia's 13/17/5 generator, for sequential streams (STiDi-BP init/shuffle).
"""

import numpy as np

MASK32 = 0xFFFFFFFF


def mix32(a):
    """Jenkins' mix32 on a uint32 scalar or array (all arithmetic mod 2**32)."""
    a = np.asarray(a, dtype=np.uint32)
    with np.errstate(over="ignore"):  # wrap-around mod 2**32 is the definition, not an accident
        a = (a + np.uint32(0x7ED55D16)) + (a << np.uint32(12))
        a = (a ^ np.uint32(0xC761C23C)) ^ (a >> np.uint32(19))
        a = (a + np.uint32(0x165667B1)) + (a << np.uint32(5))
        a = (a + np.uint32(0xD3A2646C)) ^ (a << np.uint32(9))
        a = (a + np.uint32(0xFD7046C5)) + (a << np.uint32(3))
        a = (a ^ np.uint32(0xB55A4F09)) ^ (a >> np.uint32(16))
    return a


def mix32_int(a: int) -> int:
    """Python-int twin of :func:`mix32`, used to cross-check it (and by code that needs ints)."""
    a &= MASK32
    a = ((a + 0x7ED55D16) + (a << 12)) & MASK32
    a = ((a ^ 0xC761C23C) ^ (a >> 19)) & MASK32
    a = ((a + 0x165667B1) + (a << 5)) & MASK32
    a = ((a + 0xD3A2646C) ^ (a << 9)) & MASK32
    a = ((a + 0xFD7046C5) + (a << 3)) & MASK32
    a = ((a ^ 0xB55A4F09) ^ (a >> 16)) & MASK32
    return a


def xorshift32(state: int) -> int:
    """One xorshift32 step (13, 17, 5); the returned new state is also the output. state != 0."""
    x = state & MASK32
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


def hash_permutation(n: int, key: int) -> np.ndarray:
    """A permutation of range(n) that is a pure function of ``key``.

    Sorts the indices by ``mix32(key ^ i)`` (stable, so equal hashes keep index order).
    Host-side only: the RTL receives samples in the order the host sends them.
    """
    if not 0 <= n <= 1 << 32:
        raise ValueError(f"cannot permute {n} items with a 32-bit hash")
    keys = mix32(np.uint32(key & MASK32) ^ np.arange(n, dtype=np.uint32))
    return np.argsort(keys, kind="stable").astype(np.int64)
