"""Image data: IDX reading, dataset lookup, the built-in subset, the integer 2x2 downsampling.

Datasets are the standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each gzip-compressed (``.gz``) or raw.

* ``builtin``: the first 3000 training and first 1000 test images of MNIST, shipped in
  ``golden/builtin/`` (provenance and checksums in ``builtin/README.txt``).
* ``mnist``, ``fashion-mnist``: the full sets, searched for in ``DATA_DIR/<name>/`` or ``DATA_DIR``
  itself when a data directory is given (``--data-dir``), else in ``$MFSNN_DATA/<name>/`` and, for
  Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``).

Problems with the files raise :class:`DataError`, whose message is one line naming the file and
the problem (the CLI prints it without a traceback). Loaded arrays are read-only: datasets are
cached in-process and shared between callers.

``downsample2x2`` is part of the bit-level spec: 28x28 -> 14x14 by ``(a + b + c + d + 2) >> 2``
over each 2x2 block (the mean, rounded half up), adds and a shift only.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "Split",
    "downsample2x2",
    "input_pixels",
    "load_dataset",
    "read_idx",
]

DATASETS = ("builtin", "mnist", "fashion-mnist")

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
# Number of inputs -> what input_pixels does to a 28x28 image.
INPUT_SIZES = (784, 196)

# The four files of a dataset, without the optional ".gz".
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
ENV_VAR = "MFSNN_DATA"
# Where Debian's dataset-fashion-mnist installs the four .gz files (directly, no subfolder).
DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08


class DataError(Exception):
    """A data file or directory is missing or malformed; the message is one user-facing line."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, 28, 28), read-only
    labels: np.ndarray  # uint8 (N,), values 0..9, read-only


@dataclass(frozen=True)
class Dataset:
    name: str  # one of DATASETS
    source: str  # the directory the files were read from, or "built-in"
    train: Split
    test: Split


# ---------------------------------------------------------------------------------------------
# IDX files


def _read_bytes(path: Path) -> bytes:
    """The file's IDX bytes: decompressed if it starts with the gzip magic, else as stored."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt gzip data ({type(e).__name__}: {e})") from None


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw, told apart by the gzip magic bytes).

    Only unsigned-byte data (type code 0x08) with 1 to 3 dimensions is accepted. Returns a
    read-only uint8 array of the declared shape.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes, need at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: bad IDX magic {data[:4].hex()} (the first two bytes must be zero; not an IDX file?)"
        )
    dtype_code, ndim = data[2], data[3]
    if dtype_code != _IDX_UINT8:
        raise DataError(
            f"{path}: unsupported IDX data type code 0x{dtype_code:02x} (only 0x08, unsigned byte, is supported)"
        )
    if not 1 <= ndim <= 3:
        raise DataError(f"{path}: unsupported IDX dimension count {ndim} (expected 1 to 3)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header})"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims:
        raise DataError(f"{path}: IDX dimensions {dims} include a zero (empty data)")
    expected = math.prod(dims)  # Python ints: no overflow for absurd headers
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "trailing bytes"
        raise DataError(
            f"{path}: {what}: dimensions {dims} need {expected} payload bytes, found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# ---------------------------------------------------------------------------------------------
# Datasets


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / (stem + ".gz"), directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _dataset_files(directory: Path) -> dict | None:
    """The four files in ``directory``; None if it holds none of them; DataError if only some."""
    if not directory.is_dir():
        return None
    found = {key: _find_file(directory, stem) for key, stem in FILES.items()}
    if all(f is None for f in found.values()):
        return None
    missing = [FILES[key] + "(.gz)" for key, f in found.items() if f is None]
    if missing:
        raise DataError(f"{directory}: incomplete dataset, missing {', '.join(missing)}")
    return found


def _check_split(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> Split:
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{image_path}: images have shape {images.shape}, expected (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})"
        )
    if labels.ndim != 1:
        raise DataError(f"{label_path}: labels have shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"{label_path}: {len(labels)} labels but {image_path.name} has {len(images)} images"
        )
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{label_path}: label {int(labels[i])} at index {i} is out of range 0..{N_CLASSES - 1}"
            f" ({bad.size} such labels)"
        )
    return Split(images=images, labels=labels)


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _load_files(keys: tuple) -> tuple[Split, Split]:
    """Load and check the four files, keyed by resolved path, mtime and size (see _file_key)."""
    (tr_i, _, _), (tr_l, _, _), (te_i, _, _), (te_l, _, _) = keys
    splits = []
    for ip, lp in ((Path(tr_i), Path(tr_l)), (Path(te_i), Path(te_l))):
        splits.append(_check_split(read_idx(ip), read_idx(lp), ip, lp))
    return splits[0], splits[1]


def _load_dir(name: str, files: dict, source: str) -> Dataset:
    order = (("train", "images"), ("train", "labels"), ("test", "images"), ("test", "labels"))
    try:
        keys = tuple(_file_key(files[k]) for k in order)
    except OSError as e:
        raise DataError(f"{e.filename}: cannot read: {e.strerror or e}") from None
    train, test = _load_files(keys)
    return Dataset(name=name, source=source, train=train, test=test)


def _search_dirs(name: str, data_dir) -> list[tuple[Path, str]]:
    """(directory, why it is searched) in search order."""
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        return [(d / name, "--data-dir"), (d, "--data-dir")]
    dirs = []
    env = os.environ.get(ENV_VAR, "")
    if env:
        dirs.append((Path(env).expanduser() / name, ENV_VAR))
    if name in DEBIAN_DIRS:
        dirs.append((DEBIAN_DIRS[name], f"Debian package dataset-{name}"))
    return dirs


def load_dataset(name: str, data_dir=None) -> Dataset:
    """Load a dataset by name (one of DATASETS); ``data_dir`` is ignored for ``builtin``."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "builtin":
        files = _dataset_files(BUILTIN_DIR)
        if files is None:
            raise DataError(f"{BUILTIN_DIR}: built-in data files are missing (broken installation?)")
        return _load_dir(name, files, "built-in")
    if data_dir is not None and Path(data_dir).expanduser().exists() and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"{Path(data_dir).expanduser()}: the data directory (--data-dir) is not a directory")
    searched = []
    for directory, why in _search_dirs(name, data_dir):
        files = _dataset_files(directory)
        if files is not None:
            return _load_dir(name, files, str(directory))
        searched.append(f"{directory} ({why})")
    where = "; ".join(searched) if searched else f"nowhere (no --data-dir given and {ENV_VAR} is not set)"
    raise DataError(
        f"{name}: dataset files ({FILES['train', 'images']}.gz etc.) not found; searched: {where}."
        f" Fix: pass --data-dir DIR with the files in DIR/{name}/ or DIR itself,"
        f" or set {ENV_VAR}=DIR with the files in DIR/{name}/"
    )


# ---------------------------------------------------------------------------------------------
# Input pixels


def _as_uint8(images) -> np.ndarray:
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"images must be integers 0..255, got dtype {a.dtype}")
    if a.size and (int(a.min()) < 0 or int(a.max()) > 255):
        raise ValueError(f"images must be integers 0..255, got values {int(a.min())}..{int(a.max())}")
    return a.astype(np.uint8)


def _check_images(a: np.ndarray) -> None:
    if a.ndim not in (2, 3) or a.shape[-2:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (N, 28, 28) or (28, 28), got {a.shape}")


def downsample2x2(images) -> np.ndarray:
    """28x28 -> 14x14: each output pixel is ``(a + b + c + d + 2) >> 2`` of its 2x2 block.

    Takes (N, 28, 28) or a single (28, 28) image of values 0..255; returns uint8 (N, 14, 14) or
    (14, 14). Adds and one shift in int16 (the largest sum, 4 * 255 + 2 = 1022, fits).
    """
    a = _as_uint8(images)
    _check_images(a)
    w = a.astype(np.int16)
    s = w[..., 0::2, 0::2] + w[..., 0::2, 1::2] + w[..., 1::2, 0::2] + w[..., 1::2, 1::2]
    return ((s + 2) >> 2).astype(np.uint8)


def input_pixels(images, n_inputs: int) -> np.ndarray:
    """The network input of each image: uint8 (N, n_inputs) (a single (28, 28) image gives (n_inputs,)).

    ``n_inputs`` 784 flattens the 28x28 image; 196 flattens its :func:`downsample2x2`.
    """
    if n_inputs not in INPUT_SIZES:
        raise ValueError(
            f"unsupported number of inputs {n_inputs}: supported are 784 (28x28) and 196 (14x14, 2x2-downsampled)"
        )
    a = _as_uint8(images)
    _check_images(a)
    if n_inputs == 196:
        a = downsample2x2(a)
    return a.reshape(a.shape[:-2] + (n_inputs,))


def synthetic_samples(n: int, n_inputs: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of uniform random bytes with uniform labels, for topologies that are not image
    classifiers (e.g. the 16-12-4 RTL checks): pixel i of sample k is the low byte of
    mix32(mix32(seed ^ 0xDA7A) ^ (k << 16) ^ i); the label is the low bits of mix32(... ^ 0xFFFF), rejected
    and redrawn until below ``n_classes``.
    """
    from .hashing import mix32, mix32_int

    key = np.uint32(mix32_int(seed ^ 0xDA7A))
    rows = np.arange(n, dtype=np.uint32)[:, None] << np.uint32(16)
    pixels = (mix32(key ^ rows ^ np.arange(n_inputs, dtype=np.uint32)[None, :]) & np.uint32(0xFF)).astype(np.uint8)
    labels = np.empty(n, dtype=np.uint8)
    width = max(n_classes - 1, 1).bit_length()
    for k in range(n):
        draw = mix32_int(int(key) ^ (k << 16) ^ 0xFFFF)
        while draw & ((1 << width) - 1) >= n_classes:
            draw = mix32_int(draw)
        labels[k] = draw & ((1 << width) - 1)
    return pixels, labels
