"""Integer building blocks of the golden models, each with a declared width.

Conventions (the bit-level spec, docs/golden-spec.md, refers to these names):
  * every value is carried in ``np.int64`` and is an integer of a declared width;
  * ``>>`` on signed values is an arithmetic shift, i.e. floor division by a power of two;
  * ``saturate(x, bits)`` clamps to the two's-complement range of ``bits`` bits and is applied only at
    the points the spec names;
  * sums of selected words are exact integer sums, defined by ``select_sum_reference`` and
    ``scatter_sum_reference`` (int64 adds and subtracts, nothing else). ``select_sum`` and
    ``scatter_sum`` compute the same sums on float64 (BLAS, ``np.bincount``) because that is several
    times faster; float64 is exact while every partial sum has magnitude <= 2**53, so they first
    check that bound on the declared widths and raise ``OverflowError`` when it does not hold.
    ``MirroredWords`` keeps a float64 copy of a weight matrix next to its int64 words (changed only
    together) so that the same sums need no conversion per call.
Nothing here multiplies one data value by another: the float64 paths multiply words by selectors in
{-1, 0, +1} only, which is what they check before anything else.
"""

import numpy as np

#: Every integer of magnitude <= 2**53 is a float64, so float64 sums staying within it are exact.
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


def sum_bound(terms: int, bits: int) -> int:
    """The largest magnitude any partial sum of ``terms`` signed ``bits``-bit words (or their
    negations, or any words with magnitude <= 2**(bits-1)) can reach: terms * 2**(bits-1), a shift."""
    if bits < 1:
        raise ValueError(f"a signed word needs at least 1 bit, not {bits}")
    return int(terms) << (bits - 1)


def check_float64_exact(terms: int, bits: int, what: str) -> None:
    """Raise OverflowError unless a float64 sum of ``terms`` signed ``bits``-bit words is exact."""
    bound = sum_bound(terms, bits)
    if bound > FLOAT64_EXACT:
        raise OverflowError(f"{what}: {terms} terms of {bits}-bit words can sum to {bound} > 2**53, "
                            "where float64 is no longer exact")


def check_selector(selector: np.ndarray) -> None:
    """Raise ValueError unless ``selector`` is a bool or integer array of -1, 0 and +1 only.

    Checked for every dtype (a uint8 2 would turn the sum into a multiply); bool needs no scan.
    """
    kind = selector.dtype.kind
    if kind not in "biu":
        raise ValueError(f"a selector is a bool or integer array, not {selector.dtype}")
    if kind == "b" or selector.size == 0:
        return
    high = selector.max()
    low = selector.min() if kind == "i" else 0
    if high > 1 or low < -1:
        raise ValueError(f"a selector holds only -1, 0 and +1, not {int(low) if low < -1 else int(high)}")


def _select_operands(selector, words) -> tuple[np.ndarray, np.ndarray]:
    selector = np.asarray(selector)
    words = np.asarray(words, dtype=np.int64)
    if selector.ndim < 1 or words.ndim != 2 or selector.shape[-1] != words.shape[0]:
        raise ValueError(f"select_sum takes a (..., K) selector and (K, N) words, not {selector.shape} "
                         f"and {words.shape}")
    check_selector(selector)
    return selector, words


def select_sum_reference(selector, words) -> np.ndarray:
    """The definition of a selected sum: for each selector row (leading axes are batch axes), the
    int64 sum of the word rows it selects with +1 minus the sum of those it selects with -1.

    ``selector`` (..., K) with entries in {-1, 0, +1}, ``words`` (K, N); the result is (..., N) int64.
    Adds and subtracts only; slow, it is the specification :func:`select_sum` is tested against.
    """
    selector, words = _select_operands(selector, words)
    selector = selector.astype(np.int8)
    total = np.empty(selector.shape[:-1] + (words.shape[1],), dtype=np.int64)
    for row in np.ndindex(selector.shape[:-1]):
        added = np.sum(words[selector[row] == 1], axis=0, dtype=np.int64)
        total[row] = added - np.sum(words[selector[row] == -1], axis=0, dtype=np.int64)
    return total


def select_sum(selector, words, word_bits: int | None = None) -> np.ndarray:
    """:func:`select_sum_reference`, computed as a float64 ``selector @ words`` (BLAS).

    Exact because every term is a word, its negation or 0, and the K words' bound (:func:`sum_bound`)
    is checked to be <= 2**53 first (OverflowError otherwise). ``word_bits`` declares the words'
    signed width, so they need not be scanned; without it the bound uses their largest magnitude.
    """
    selector, words = _select_operands(selector, words)
    if word_bits is None:   # the fewest bits with every |word| <= 2**(bits-1), what the bound needs
        word_bits = max(int(np.abs(words).max()) - 1, 0).bit_length() + 1 if words.size else 1
    check_float64_exact(words.shape[0], word_bits, "select_sum")
    total = selector.astype(np.float64) @ words.astype(np.float64)
    return total.astype(np.int64)


class MirroredWords:
    """Signed ``word_bits``-bit int64 words (K, N) and a float64 copy of them, always the same values.

    :func:`select_sum` converts its words to float64 on every call; for a weight matrix summed many
    times per sample that conversion was most of the training time at ``784-1600-800-10``. This object
    converts once and then keeps the copy (``mirror``, Fortran order so that gathering columns copies
    contiguous memory) equal to ``words``: both change only together, in :meth:`add_saturating`. ``words`` is
    the caller's array itself, not a copy, and nobody else may write to it while the object is in use.
    :meth:`select_rows` and :meth:`select_columns` are :func:`select_sum` on ``words`` and on chosen
    columns of it; their definitions are ``select_sum_reference(selector, words)`` and
    ``select_sum_reference(selector, words[:, columns].T)``. Exact for the same reason: every word
    is a float64 (checked: ``word_bits`` <= 54, the words are scanned once here and
    :meth:`add_saturating` writes only saturated words), and every sum is checked against the 2**53
    bound first.
    """

    def __init__(self, words, word_bits: int):
        check_float64_exact(1, word_bits, "MirroredWords")        # one word of word_bits is a float64
        if (not isinstance(words, np.ndarray) or words.dtype != np.int64 or words.ndim != 2
                or not words.flags.c_contiguous):
            raise TypeError(f"MirroredWords keeps a 2-D C-contiguous int64 array (updated in place), not "
                            f"{type(words).__name__} {getattr(words, 'dtype', '')}")
        if not fits_signed(words, word_bits):
            raise OverflowError(f"MirroredWords: words beyond {word_bits} bits")
        self.words, self.word_bits = words, word_bits
        self.mirror = np.asfortranarray(words, dtype=np.float64)
        # Flat views and where each row of ``words`` and each column of ``mirror`` starts in them:
        # add_saturating reads and writes a block through flat indices, faster than np.ix_ indexing.
        rows, cols = words.shape
        self._flat_words, self._flat_mirror = words.reshape(-1), self.mirror.T.reshape(-1)
        self._row_starts = np.arange(0, words.size, cols) if cols else np.zeros(rows, dtype=np.int64)
        self._col_starts = np.arange(0, words.size, rows) if rows else np.zeros(cols, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return self.words.shape

    def add_saturating(self, rows, cols, delta) -> None:
        """``words[block] = saturate(words[block] + delta, word_bits)`` with ``block = np.ix_(rows, cols)``
        (distinct rows, distinct cols), and the same words into the float64 copy: the only writer."""
        delta = np.asarray(delta, dtype=np.int64)
        rows, cols = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
        if delta.shape != rows.shape + cols.shape:
            raise ValueError(f"add_saturating takes a ({rows.size}, {cols.size}) delta, not {delta.shape}")
        flat = self._row_starts[rows][:, None] + cols
        new = saturate(self._flat_words[flat] + delta, self.word_bits)   # word_bits wide: a float64 too
        self._flat_words[flat] = new
        self._flat_mirror[self._col_starts[cols][:, None] + rows] = new.T

    def select_rows(self, selector) -> np.ndarray:
        """``select_sum(selector, words)``: (..., K) selector, (..., N) int64 sums, no conversion of the words."""
        selector = np.asarray(selector)
        if selector.ndim < 1 or selector.shape[-1] != self.words.shape[0]:
            raise ValueError(f"select_rows takes a (..., {self.words.shape[0]}) selector, not {selector.shape}")
        check_selector(selector)
        check_float64_exact(self.words.shape[0], self.word_bits, "MirroredWords.select_rows")
        used = np.flatnonzero(selector.any(axis=tuple(range(selector.ndim - 1))))     # rows any selector takes
        if used.size <= self.words.shape[0] >> 2:
            # Few rows selected (the hidden desire of a big layer): converting just those rows of the
            # int64 words reads far less memory than a product over the whole copy. Same terms.
            return (selector[..., used].astype(np.float64) @ self.words[used].astype(np.float64)).astype(np.int64)
        return (selector.astype(np.float64) @ self.mirror).astype(np.int64)

    def select_columns(self, selector, columns) -> np.ndarray:
        """``select_sum(selector, words[:, columns].T)``: selector (..., C) over the C given columns,
        (..., K) int64 sums."""
        selector, columns = np.asarray(selector), np.asarray(columns, dtype=np.intp)
        if columns.ndim != 1 or selector.ndim < 1 or selector.shape[-1] != columns.shape[0]:
            raise ValueError(f"select_columns takes a (..., C) selector and C columns, not {selector.shape} "
                             f"and {columns.shape}")
        check_selector(selector)
        check_float64_exact(columns.shape[0], self.word_bits, "MirroredWords.select_columns")
        return (selector.astype(np.float64) @ self.mirror[:, columns].T).astype(np.int64)


def _scatter_operands(index, terms) -> tuple[np.ndarray, np.ndarray]:
    index = np.asarray(index).reshape(-1)
    terms = np.asarray(terms, dtype=np.int64).reshape(-1)
    if index.shape != terms.shape:
        raise ValueError(f"scatter_sum takes one bin index per term, not {index.shape} for {terms.shape}")
    return index, terms


def scatter_sum_reference(index, terms, size: int) -> np.ndarray:
    """The definition of a scattered sum: bin b (0 <= b < size) is the int64 sum of the terms whose
    index is b. ``index`` and ``terms`` have one shape (flattened). Adds only (``np.add.at``)."""
    index, terms = _scatter_operands(index, terms)
    total = np.zeros(size, dtype=np.int64)
    np.add.at(total, index, terms)
    return total


def scatter_sum(index, terms, size: int, term_bits: int) -> np.ndarray:
    """:func:`scatter_sum_reference`, computed by a float64 ``np.bincount`` with the terms as weights.

    ``term_bits`` declares the terms' signed width. Exact when the fullest bin's :func:`sum_bound` is
    <= 2**53 (OverflowError otherwise): the number of terms bounds every bin's count without a scan,
    and the bins are counted only when that cheap bound is too loose.
    """
    index, terms = _scatter_operands(index, terms)
    fullest = len(terms)
    if sum_bound(fullest, term_bits) > FLOAT64_EXACT:
        fullest = int(np.bincount(index).max())
    check_float64_exact(fullest, term_bits, "scatter_sum")
    total = np.bincount(index, weights=terms.astype(np.float64), minlength=size)
    return total.astype(np.int64)


_SMALL_BIT_LENGTHS = np.array([v.bit_length() for v in range(256)], dtype=np.int64)


def bit_length(x) -> np.ndarray:
    """Number of bits of non-negative integers (0 -> 0): a leading-one detector, no logarithms."""
    x = np.asarray(x, dtype=np.int64)
    if x.size and x.min() < 0:
        raise ValueError(f"bit_length takes non-negative integers, not {int(x.min())}")
    if x.size and x.max() < len(_SMALL_BIT_LENGTHS):
        return _SMALL_BIT_LENGTHS[x]
    length = np.zeros(x.shape, dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = x >= (1 << shift)
        x = np.where(big, x >> shift, x)
        length += np.where(big, shift, 0)
    return length + (x > 0)
