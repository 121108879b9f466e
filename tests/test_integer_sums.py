"""The float64 fast paths of the exact sums equal their pure-integer definitions, up to the 2**53 bound.

``select_sum``/``scatter_sum`` (float64 BLAS, ``np.bincount``) against ``select_sum_reference``/
``scatter_sum_reference`` (int64 adds), and the references against Python's integers. Hypothesis
runs derandomized, so every run draws the same examples.
"""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mfsnn.golden.fixedpoint import (FLOAT64_EXACT, MirroredWords, scatter_sum, scatter_sum_reference,
                                     select_sum, select_sum_reference, sum_bound)

HYP = settings(max_examples=300, deadline=None, derandomize=True)
SELECTOR_VALUES = {np.bool_: st.booleans(), np.uint8: st.integers(0, 1), np.int8: st.integers(-1, 1),
                   np.int64: st.integers(-1, 1)}


def words_of(bits: int):
    """Signed ``bits``-bit words, with the extremes drawn often."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return st.one_of(st.sampled_from([lo, hi, lo + 1, 0]), st.integers(lo, hi))


@st.composite
def selections(draw):
    """(selector, words, bits): batch axes of any length (zero rows included), K = 0.., words of
    ``bits`` bits with K at most the largest count the 2**53 bound allows."""
    bits = draw(st.integers(1, 54))
    terms = draw(st.integers(0, min(12, FLOAT64_EXACT >> (bits - 1))))
    outputs = draw(st.integers(0, 4))
    batch = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    dtype = draw(st.sampled_from(list(SELECTOR_VALUES)))
    selector = draw(hnp.arrays(dtype, batch + (terms,), elements=SELECTOR_VALUES[dtype]))
    words = draw(hnp.arrays(np.int64, (terms, outputs), elements=words_of(bits)))
    return selector, words, bits


def python_select_sum(selector, words, row):
    """The sums of one selector row in Python integers."""
    return [sum(int(s) * int(w) for s, w in zip(selector[row], column)) for column in words.T]


@HYP
@given(selections())
def test_select_sum_equals_its_integer_definition(case):
    selector, words, bits = case
    reference = select_sum_reference(selector, words)
    assert reference.dtype == np.int64 and reference.shape == selector.shape[:-1] + (words.shape[1],)
    for row in np.ndindex(selector.shape[:-1]):
        assert reference[row].tolist() == python_select_sum(selector, words, row)
    assert np.array_equal(select_sum(selector, words, bits), reference)
    assert np.array_equal(select_sum(selector, words), reference)          # bound from the words themselves


@st.composite
def scatters(draw):
    bits = draw(st.integers(1, 54))
    count = draw(st.integers(0, min(30, FLOAT64_EXACT >> (bits - 1))))
    size = draw(st.integers(1, 6))
    index = draw(hnp.arrays(np.int64, count, elements=st.integers(0, size - 1)))
    terms = draw(hnp.arrays(np.int64, count, elements=words_of(bits)))
    return index, terms, size, bits


@HYP
@given(scatters())
def test_scatter_sum_equals_its_integer_definition(case):
    index, terms, size, bits = case
    reference = scatter_sum_reference(index, terms, size)
    assert reference.tolist() == [sum(int(t) for i, t in zip(index, terms) if i == b) for b in range(size)]
    assert np.array_equal(scatter_sum(index, terms, size, bits), reference)


def test_scatter_sum_takes_any_shape_of_one_index_per_term():
    index = np.array([[0, 2], [2, 1]])
    terms = np.array([[5, -1], [-3, 7]])
    assert scatter_sum_reference(index, terms, 4).tolist() == [5, 7, -4, 0]
    assert np.array_equal(scatter_sum(index, terms, 4, 4), scatter_sum_reference(index, terms, 4))


# ------------------------------------------------------------------------------------------------
# The bound: K terms of `bits` bits are exact while K << (bits - 1) <= 2**53
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("terms, bits", [(1, 54), (2, 53), (4, 52), (1 << 33, 21), (0, 64)])
def test_bound_exactly_at_the_limit_passes(terms, bits):
    assert sum_bound(terms, bits) <= FLOAT64_EXACT


@pytest.mark.parametrize("terms, bits", [(2, 53), (4, 52)])
def test_sum_at_the_limit_is_exact(terms, bits):
    lowest = -(1 << (bits - 1))
    words = np.full((terms, 1), lowest, dtype=np.int64)
    selector = np.ones((1, terms), dtype=np.int8)
    assert int(select_sum(selector, words, bits)[0, 0]) == -FLOAT64_EXACT
    assert int(select_sum(-selector, words, bits)[0, 0]) == FLOAT64_EXACT
    assert int(scatter_sum(np.zeros(terms, np.int64), words[:, 0], 1, bits)[0]) == -FLOAT64_EXACT


@pytest.mark.parametrize("terms, bits", [(1, 55), (2, 54), (3, 53), (5, 52)])
def test_one_more_term_or_bit_raises(terms, bits):
    words = np.zeros((terms, 1), dtype=np.int64)
    with pytest.raises(OverflowError, match="select_sum: .* > 2\\*\\*53"):
        select_sum(np.ones((1, terms), dtype=np.uint8), words, bits)
    with pytest.raises(OverflowError, match="scatter_sum"):
        scatter_sum(np.zeros(terms, np.int64), words[:, 0], 1, bits)


def test_undeclared_words_are_bounded_by_their_largest_magnitude():
    # 2**53 + 1 is not a float64: without the bound the fast path returned 2**53.
    with pytest.raises(OverflowError):
        select_sum(np.array([[1, 1]]), np.array([[FLOAT64_EXACT], [1]]))
    assert int(select_sum(np.array([[1, 1]]), np.array([[FLOAT64_EXACT >> 1], [FLOAT64_EXACT >> 1]]))[0, 0]) \
        == FLOAT64_EXACT


def test_scatter_bound_counts_the_fullest_bin_when_the_total_is_too_many():
    # Three 53-bit terms: 3 << 52 > 2**53 in total, but no bin holds more than two of them.
    big = -(1 << 52)
    assert scatter_sum([0, 0, 1], [big, big, big], 2, 53).tolist() == [-FLOAT64_EXACT, big]
    with pytest.raises(OverflowError, match="3 terms of 53-bit"):
        scatter_sum([0, 0, 0], [big, big, big], 1, 53)


# ------------------------------------------------------------------------------------------------
# Empty selections, batch axes
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("selector_shape, words_shape",
                         [((3, 0), (0, 2)), ((0, 4), (4, 2)), ((2, 0, 4), (4, 3)), ((4,), (4, 0)), ((0,), (0, 5))])
def test_empty_selections_sum_to_zero_rows(selector_shape, words_shape):
    selector = np.zeros(selector_shape, dtype=np.uint8)
    words = np.ones(words_shape, dtype=np.int64)
    expected = np.zeros(selector_shape[:-1] + words_shape[1:], dtype=np.int64)
    for total in (select_sum(selector, words, 8), select_sum_reference(selector, words)):
        assert total.dtype == np.int64 and np.array_equal(total, expected)


def test_batch_axes_select_row_by_row():
    rng = np.random.default_rng(5)
    selector = rng.integers(-1, 2, (2, 3, 4)).astype(np.int8)
    words = rng.integers(-(1 << 40), 1 << 40, (4, 5))
    batched = select_sum(selector, words, 41)
    assert batched.shape == (2, 3, 5)
    for row in np.ndindex(2, 3):
        assert np.array_equal(batched[row], select_sum(selector[row][None], words, 41)[0])
    assert np.array_equal(batched, select_sum_reference(selector, words))


def test_empty_scatter_is_zero_bins():
    assert scatter_sum(np.zeros(0, np.int64), np.zeros(0, np.int64), 3, 40).tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------------------------
# Invalid selectors and operands
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("selector", [np.array([[2]], np.uint8), np.array([[255]], np.uint8),
                                      np.array([[-2]], np.int8), np.array([[-128]], np.int8),
                                      np.array([[3]], np.int64), np.array([[1 << 40]], np.int64),
                                      np.array([[0, 1, 0, -1, 2]], np.int16)[:, -1:]])
def test_selectors_beyond_plus_minus_one_raise_for_every_dtype(selector):
    # uint8 [[2]] . [[5]] used to return 10: a multiply, not a selection.
    words = np.full((1, 1), 5, dtype=np.int64)
    for function in (select_sum, select_sum_reference):
        with pytest.raises(ValueError, match="a selector holds only -1, 0 and \\+1, not"):
            function(selector, words)


@st.composite
def invalid_selectors(draw):
    """An integer selector of any dtype with one entry outside {-1, 0, +1}."""
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64])))
    info = np.iinfo(dtype)
    bad = draw(st.one_of(st.integers(2, info.max), st.integers(info.min, -2) if info.min < 0 else st.nothing()))
    selector = draw(hnp.arrays(dtype, (draw(st.integers(1, 3)), 4), elements=st.integers(max(info.min, -1), 1)))
    selector[draw(st.integers(0, selector.shape[0] - 1)), draw(st.integers(0, 3))] = bad
    return selector


@HYP
@given(invalid_selectors())
def test_any_entry_beyond_plus_minus_one_raises(selector):
    for function in (select_sum, select_sum_reference):
        with pytest.raises(ValueError, match="a selector holds only -1, 0 and \\+1"):
            function(selector, np.ones((4, 2), dtype=np.int64))


def test_float_selectors_and_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="bool or integer array, not float64"):
        select_sum(np.ones((1, 1)), np.ones((1, 1), np.int64))
    with pytest.raises(ValueError, match="\\(\\.\\.\\., K\\) selector and \\(K, N\\) words"):
        select_sum(np.ones((1, 2), np.int8), np.ones((3, 1), np.int64))
    with pytest.raises(ValueError, match="one bin index per term"):
        scatter_sum([0, 1], [1], 2, 8)


# ------------------------------------------------------------------------------------------------
# The guards are code, not asserts: python -O keeps them
# ------------------------------------------------------------------------------------------------

OPTIMIZED_PROBE = """
import numpy as np
from mfsnn.golden.fixedpoint import select_sum
assert False, "this interpreter keeps asserts: the probe would prove nothing"
"""

PROBES = {
    "OverflowError": "select_sum(np.array([[1, 1]]), np.array([[2 ** 53], [1]]))",
    "ValueError": "select_sum(np.array([[2]], np.uint8), np.array([[5]]))",
}


@pytest.mark.parametrize("error", sorted(PROBES))
def test_guards_raise_under_python_O(error):
    script = OPTIMIZED_PROBE + f"""
try:
    print("returned", {PROBES[error]})
except {error} as caught:
    print("raised", type(caught).__name__)
"""
    run = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"raised {error}"


# ------------------------------------------------------------------------------------------------
# MirroredWords: the words' float64 copy, kept equal by assign; its sums equal select_sum_reference
# ------------------------------------------------------------------------------------------------

@st.composite
def mirrored_cases(draw):
    """(words, bits, row selector, columns, column selector, assignments) with the 2**53 bound holding."""
    bits = draw(st.integers(1, 54))
    limit = min(8, FLOAT64_EXACT >> (bits - 1))
    rows, cols = draw(st.integers(0, limit)), draw(st.integers(0, limit))
    words = draw(hnp.arrays(np.int64, (rows, cols), elements=words_of(bits)))
    dtype = draw(st.sampled_from(list(SELECTOR_VALUES)))
    batch = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    row_selector = draw(hnp.arrays(dtype, batch + (rows,), elements=SELECTOR_VALUES[dtype]))
    columns = np.array(draw(st.lists(st.integers(0, cols - 1), max_size=limit)) if cols else [], dtype=np.int64)
    column_selector = draw(hnp.arrays(dtype, batch + (len(columns),), elements=SELECTOR_VALUES[dtype]))
    updates = []         # deltas up to twice the word range: some saturate, some do not
    for _ in range(draw(st.integers(0, 3)) if rows and cols else 0):
        r = np.unique(draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=rows)))
        c = np.unique(draw(st.lists(st.integers(0, cols - 1), min_size=1, max_size=cols)))
        updates.append((r, c, draw(hnp.arrays(np.int64, (len(r), len(c)), elements=words_of(min(bits + 1, 54))))))
    return words, bits, row_selector, columns, column_selector, updates


@HYP
@given(mirrored_cases())
def test_mirrored_words_sum_like_their_integer_definition_after_any_updates(case):
    words, bits, row_selector, columns, column_selector, updates = case
    expected = words.copy()
    mirrored = MirroredWords(words, bits)
    assert mirrored.words is words                                     # the caller's array, not a copy
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for rows, cols, delta in updates:
        mirrored.add_saturating(rows, cols, delta)
        block = np.ix_(rows, cols)
        expected[block] = [[min(max(int(w) + int(d), lo), hi) for w, d in zip(*pair)]
                           for pair in zip(expected[block], delta)]
    assert np.array_equal(words, expected)
    assert np.array_equal(mirrored.mirror, words.astype(np.float64))    # the copy holds the same values
    assert np.array_equal(mirrored.select_rows(row_selector), select_sum_reference(row_selector, words))
    assert np.array_equal(mirrored.select_columns(column_selector, columns),
                          select_sum_reference(column_selector, words[:, columns].T))


def test_mirrored_words_refuse_what_float64_cannot_hold_exactly():
    with pytest.raises(OverflowError, match="MirroredWords"):
        MirroredWords(np.zeros((1, 1), np.int64), 55)                  # a 55-bit word is not a float64
    with pytest.raises(OverflowError, match="beyond 8 bits"):
        MirroredWords(np.array([[128]]), 8)
    mirrored = MirroredWords(np.zeros((2, 2), np.int64), 8)
    mirrored.add_saturating([0], [1], [[-1000]])                       # saturates in both copies
    assert mirrored.words.tolist() == [[0, -128], [0, 0]] and mirrored.mirror.tolist() == [[0, -128], [0, 0]]
    with pytest.raises(OverflowError, match="select_rows: 3 terms of 53-bit"):
        MirroredWords(np.zeros((3, 1), np.int64), 53).select_rows(np.ones(3, np.int8))
    with pytest.raises(OverflowError, match="select_columns: 3 terms of 53-bit"):
        MirroredWords(np.zeros((1, 4), np.int64), 53).select_columns(np.ones(3, np.int8), [0, 1, 2])
    with pytest.raises(TypeError, match="2-D C-contiguous int64 array"):
        MirroredWords(np.zeros((1, 1), np.int32), 8)
    with pytest.raises(TypeError, match="2-D C-contiguous int64 array"):
        MirroredWords(np.zeros((2, 3), np.int64).T, 8)                 # assign writes through a flat view
    with pytest.raises(ValueError, match="add_saturating takes a \\(1, 2\\) delta"):
        mirrored.add_saturating([0], [0, 1], [[1]])


def test_mirrored_words_check_their_selectors():
    mirrored = MirroredWords(np.full((2, 2), 5, np.int64), 8)
    with pytest.raises(ValueError, match="a selector holds only -1, 0 and \\+1, not 2"):
        mirrored.select_rows(np.array([2, 0], np.uint8))
    with pytest.raises(ValueError, match="a selector holds only -1, 0 and \\+1, not -2"):
        mirrored.select_columns(np.array([-2], np.int8), [1])
    with pytest.raises(ValueError, match="\\(\\.\\.\\., 2\\) selector"):
        mirrored.select_rows(np.ones(3, np.int8))
    with pytest.raises(ValueError, match="C columns"):
        mirrored.select_columns(np.ones(2, np.int8), [0])


@pytest.mark.parametrize("used", [0, 1, 2, 3, 16])
def test_mirrored_row_sums_over_few_rows_or_many_are_the_same_sums(used):
    # select_rows converts only the selected rows when they are at most a quarter of them (here 4 of 16).
    rng = np.random.default_rng(used)
    words = rng.integers(-(1 << 23), 1 << 23, (16, 5))
    selector = np.zeros((2, 3, 16), np.int8)
    rows = rng.choice(16, used, replace=False)
    selector[..., rows] = rng.integers(-1, 2, (2, 3, used))
    selector[0, 0, rows] = 1                                            # every chosen row is used
    assert np.array_equal(MirroredWords(words, 24).select_rows(selector), select_sum_reference(selector, words))
