"""Integer hash and PRNG test vectors (notes/desire-bp.md 9.3, notes/stidi-bp.md 10.4)."""

import numpy as np
import pytest

from mfsnn.golden.hashing import hash_permutation, mix32, mix32_int, xorshift32

MIX32_VECTORS = [(0, 0x6B4ED927), (1, 0xB48681B6), (2, 0xE267B84C), (0xDEADBEEF, 0x7FF0EADA),
                 (0xFFFFFFFF, 0xFE64C182)]


@pytest.mark.parametrize("value,expected", MIX32_VECTORS)
def test_mix32_vectors(value, expected):
    assert int(mix32(value)) == expected
    assert mix32_int(value) == expected


def test_mix32_vectorised_matches_scalar():
    values = np.arange(0, 1 << 32, 9_999_991, dtype=np.uint64).astype(np.uint32)
    assert [int(v) for v in mix32(values)] == [mix32_int(int(v)) for v in values]


def test_dropout_key_vectors():
    # SEED = 1, q = 0: k1 = mix32(1 ^ 0); layer 1 neurons 0..3 hash mix32(k1 ^ (1 << 16) ^ n).
    k1 = mix32_int(1 ^ 0)
    assert k1 == 0xB48681B6
    r = mix32(np.uint32(k1) ^ np.uint32(1 << 16) ^ np.arange(4, dtype=np.uint32))
    assert [int(x) for x in r] == [0x24B8C3AA, 0x2346D30D, 0x5056E04E, 0x02EFFF9E]


def test_xorshift32_vectors():
    state, outputs = 0x2545F491, []
    for _ in range(3):
        state = xorshift32(state)
        outputs.append(state)
    assert outputs == [0xE124B63A, 0x8B9A74AB, 0x64E1B3AC]


def test_hash_permutation_is_a_permutation_and_keyed():
    p = hash_permutation(1000, 7)
    assert sorted(p.tolist()) == list(range(1000))
    assert p.tolist() == hash_permutation(1000, 7).tolist()
    assert p.tolist() != hash_permutation(1000, 8).tolist()
