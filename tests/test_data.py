"""IDX reading, dataset lookup and validation, the built-in subset, the integer 2x2 downsampling."""

import gzip
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from mfsnn.golden import data
from mfsnn.golden.data import (
    DATASETS,
    DataError,
    Dataset,
    Split,
    downsample2x2,
    input_pixels,
    load_dataset,
    read_idx,
)

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"
T_IMAGES = "t10k-images-idx3-ubyte"
T_LABELS = "t10k-labels-idx1-ubyte"


# ---------------------------------------------------------------------------------------------
# helpers: IDX bytes written from the format description, independently of data.py


def idx_bytes(shape, payload=None, dtype_code=0x08, magic01=b"\x00\x00"):
    if payload is None:
        payload = (np.arange(int(np.prod(shape))) % 251).astype(np.uint8).tobytes()
    header = magic01 + bytes([dtype_code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + payload


def write(path: Path, raw: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def error_of(fn, *args, **kw) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg, "DataError messages are one line"
    return msg


def make_dataset(directory: Path, n_train=6, n_test=4, compress=True, *, train_images=None,
                 train_labels=None) -> Path:
    """A tiny valid dataset (optionally with replaced train bytes) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    sfx = ".gz" if compress else ""
    ti = train_images if train_images is not None else idx_bytes(
        (n_train, 28, 28), rng.integers(0, 256, n_train * 784, dtype=np.uint8).tobytes())
    tl = train_labels if train_labels is not None else idx_bytes(
        (n_train,), (np.arange(n_train) % 10).astype(np.uint8).tobytes())
    write(directory / (IMAGES + sfx), ti, compress)
    write(directory / (LABELS + sfx), tl, compress)
    write(directory / (T_IMAGES + sfx),
          idx_bytes((n_test, 28, 28), rng.integers(0, 256, n_test * 784, dtype=np.uint8).tobytes()), compress)
    write(directory / (T_LABELS + sfx), idx_bytes((n_test,), bytes([9, 0, 5, 3][:n_test])), compress)
    return directory


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No MFSNN_DATA and no Debian directory: lookups see only what a test sets up."""
    monkeypatch.delenv("MFSNN_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIRS", {"fashion-mnist": tmp_path / "no-debian" / "fashion-mnist"})


# ---------------------------------------------------------------------------------------------
# read_idx: round trips


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 28, 28)], ids=str)
def test_read_idx_round_trip(tmp_path, compress, shape):
    values = np.random.default_rng(len(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    p = write(tmp_path / ("f.gz" if compress else "f"), idx_bytes(shape, values.tobytes()), compress)
    got = read_idx(p)
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, values)
    assert not got.flags.writeable  # shared with the dataset cache


def test_read_idx_detects_gzip_by_magic_not_name(tmp_path):
    raw = idx_bytes((4,), bytes([1, 2, 3, 4]))
    gz_named_plain = write(tmp_path / "labels", raw, compress=True)  # gzip content, no .gz
    plain_named_gz = write(tmp_path / "labels.gz", raw, compress=False)  # raw content, .gz name
    assert read_idx(gz_named_plain).tolist() == [1, 2, 3, 4]
    assert read_idx(str(plain_named_gz)).tolist() == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# read_idx: every error names the file and the problem


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_read_idx_bad_magic(tmp_path, compress):
    p = write(tmp_path / "x", idx_bytes((4,), magic01=b"\x01\x00"), compress)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "bad IDX magic" in msg


def test_read_idx_not_idx_at_all(tmp_path):
    p = write(tmp_path / "notes.txt", b"hello world, this is text", compress=False)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "bad IDX magic" in msg


@pytest.mark.parametrize("code", [0x09, 0x0B, 0x0C, 0x0D, 0x0E])  # int8, int16, int32, float, double
def test_read_idx_unsupported_dtype(tmp_path, code):
    p = write(tmp_path / "x.gz", idx_bytes((4,), dtype_code=code), compress=True)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "unsupported IDX data type" in msg and f"0x{code:02x}" in msg


@pytest.mark.parametrize("ndim", [0, 4])
def test_read_idx_wrong_ndim(tmp_path, ndim):
    shape = (2,) * ndim
    p = write(tmp_path / "x", idx_bytes(shape, bytes(2**ndim)), compress=False)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "dimension count" in msg and str(ndim) in msg


def test_read_idx_truncated_header(tmp_path):
    p = write(tmp_path / "x", idx_bytes((2, 28, 28))[:10], compress=False)  # 3 dims need 16 bytes
    msg = error_of(read_idx, p)
    assert str(p) in msg and "truncated IDX header" in msg and "16" in msg


def test_read_idx_too_short(tmp_path):
    p = write(tmp_path / "x", b"\x00\x00", compress=False)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "too short" in msg


def test_read_idx_zero_dimension(tmp_path):
    p = write(tmp_path / "x", idx_bytes((0, 28, 28), b""), compress=False)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "zero" in msg


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_read_idx_truncated_payload(tmp_path, compress):
    raw = idx_bytes((3, 28, 28))
    p = write(tmp_path / "x", raw[:-100], compress)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "truncated" in msg
    assert f"need {3 * 784} payload bytes, found {3 * 784 - 100}" in msg


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_read_idx_trailing_bytes(tmp_path, compress):
    p = write(tmp_path / "x", idx_bytes((5,)) + b"\x00\x00\x00", compress)
    msg = error_of(read_idx, p)
    assert str(p) in msg and "trailing bytes" in msg and "need 5 payload bytes, found 8" in msg


def test_read_idx_corrupt_gzip_body(tmp_path):
    gz = bytearray(gzip.compress(idx_bytes((4, 28, 28)), mtime=0))
    for i in range(12, len(gz) - 8):  # scramble the deflate stream, keep the gzip header
        gz[i] ^= 0x5A
    p = tmp_path / "x.gz"
    p.write_bytes(bytes(gz))
    msg = error_of(read_idx, p)
    assert str(p) in msg and "corrupt gzip" in msg


def test_read_idx_corrupt_gzip_crc(tmp_path):
    gz = bytearray(gzip.compress(idx_bytes((4,)), mtime=0))
    gz[-8] ^= 0xFF  # CRC32 trailer
    p = tmp_path / "x.gz"
    p.write_bytes(bytes(gz))
    msg = error_of(read_idx, p)
    assert str(p) in msg and "corrupt gzip" in msg


def test_read_idx_cut_off_gzip(tmp_path):
    gz = gzip.compress(idx_bytes((4, 28, 28)), mtime=0)
    p = tmp_path / "x.gz"
    p.write_bytes(gz[: len(gz) // 2])  # EOFError inside gzip
    msg = error_of(read_idx, p)
    assert str(p) in msg and "corrupt gzip" in msg


def test_read_idx_missing_file(tmp_path):
    p = tmp_path / "nope.gz"
    msg = error_of(read_idx, p)
    assert str(p) in msg and "cannot read" in msg


# ---------------------------------------------------------------------------------------------
# load_dataset: lookup


def test_dataset_names():
    assert DATASETS == ("builtin", "mnist", "fashion-mnist")


def test_unknown_dataset_lists_choices(tmp_path):
    msg = error_of(load_dataset, "cifar10", tmp_path)
    assert "cifar10" in msg and all(name in msg for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_data_dir_subfolder(tmp_path, no_env, name):
    make_dataset(tmp_path / name)
    ds = load_dataset(name, data_dir=tmp_path)
    assert isinstance(ds, Dataset) and isinstance(ds.train, Split)
    assert ds.name == name and Path(ds.source) == tmp_path / name
    assert ds.train.images.shape == (6, 28, 28) and ds.train.labels.shape == (6,)
    assert ds.test.images.shape == (4, 28, 28) and ds.test.labels.tolist() == [9, 0, 5, 3]
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.uint8


def test_data_dir_itself_raw_files(tmp_path, no_env):
    make_dataset(tmp_path, compress=False)
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert Path(ds.source) == tmp_path
    assert ds.train.labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_env_var(tmp_path, no_env, monkeypatch):
    make_dataset(tmp_path / "mnist", n_train=3)
    monkeypatch.setenv("MFSNN_DATA", str(tmp_path))
    ds = load_dataset("mnist")
    assert Path(ds.source) == tmp_path / "mnist" and len(ds.train.images) == 3


def test_debian_fashion_mnist_directory(tmp_path, no_env, monkeypatch):
    debian = make_dataset(tmp_path / "usr-share-datasets" / "fashion-mnist", n_train=2)
    monkeypatch.setattr(data, "DEBIAN_DIRS", {"fashion-mnist": debian})
    ds = load_dataset("fashion-mnist")
    assert Path(ds.source) == debian and len(ds.train.labels) == 2
    assert error_of(load_dataset, "mnist")  # Debian's directory is only for Fashion-MNIST


def test_missing_directory_lists_searched_places(tmp_path, no_env, monkeypatch):
    msg = error_of(load_dataset, "mnist", data_dir=tmp_path / "nothing-here")
    assert str(tmp_path / "nothing-here" / "mnist") in msg and str(tmp_path / "nothing-here") in msg
    assert "--data-dir" in msg and "MFSNN_DATA" in msg

    env = tmp_path / "env"
    monkeypatch.setenv("MFSNN_DATA", str(env))
    msg = error_of(load_dataset, "fashion-mnist")
    assert str(env / "fashion-mnist") in msg
    assert str(data.DEBIAN_DIRS["fashion-mnist"]) in msg
    assert "--data-dir" in msg and "MFSNN_DATA" in msg


def test_data_dir_is_a_file(tmp_path, no_env):
    f = write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes((1, 28, 28)), compress=True)
    msg = error_of(load_dataset, "mnist", data_dir=f)
    assert str(f) in msg and "not a directory" in msg


def test_missing_everything_without_env(no_env):
    msg = error_of(load_dataset, "mnist")
    assert "not set" in msg and "--data-dir" in msg and "MFSNN_DATA" in msg


def test_incomplete_directory(tmp_path, no_env):
    d = make_dataset(tmp_path / "mnist")
    (d / (T_LABELS + ".gz")).unlink()
    msg = error_of(load_dataset, "mnist", tmp_path)
    assert str(d) in msg and "missing" in msg and T_LABELS in msg


def test_cache_is_keyed_by_file(tmp_path, no_env):
    make_dataset(tmp_path / "mnist")
    a = load_dataset("mnist", tmp_path)
    b = load_dataset("mnist", tmp_path / "mnist" / "..")  # same files by another spelling
    assert a.train.images is b.train.images
    # Rewriting a file (new size) is seen, not served from the cache.
    write(tmp_path / "mnist" / (T_LABELS + ".gz"), idx_bytes((2,), bytes([1, 2])), compress=True)
    with pytest.raises(DataError):  # 4 test images, 2 labels
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------
# load_dataset: validation of the contents


def test_image_label_count_mismatch(tmp_path, no_env):
    d = make_dataset(tmp_path, train_labels=idx_bytes((5,), bytes(5)))  # 6 images
    msg = error_of(load_dataset, "mnist", tmp_path)
    assert str(d / (LABELS + ".gz")) in msg and "5 labels" in msg and "6 images" in msg


def test_label_out_of_range(tmp_path, no_env):
    d = make_dataset(tmp_path, train_labels=idx_bytes((6,), bytes([0, 1, 2, 10, 4, 255])))
    msg = error_of(load_dataset, "mnist", tmp_path)
    assert str(d / (LABELS + ".gz")) in msg and "label 10 at index 3" in msg and "0..9" in msg


def test_wrong_image_size(tmp_path, no_env):
    d = make_dataset(tmp_path, train_images=idx_bytes((6, 14, 14)))
    msg = error_of(load_dataset, "mnist", tmp_path)
    assert str(d / (IMAGES + ".gz")) in msg and "(6, 14, 14)" in msg and "28" in msg


def test_images_not_3d(tmp_path, no_env):
    d = make_dataset(tmp_path, train_images=idx_bytes((6, 784)))
    msg = error_of(load_dataset, "mnist", tmp_path)
    assert str(d / (IMAGES + ".gz")) in msg and "(6, 784)" in msg


def test_labels_not_1d(tmp_path, no_env):
    d = make_dataset(tmp_path, train_labels=idx_bytes((6, 1), bytes(6)))
    msg = error_of(load_dataset, "mnist", tmp_path)
    assert str(d / (LABELS + ".gz")) in msg and "(6, 1)" in msg


def test_corrupt_file_inside_dataset(tmp_path, no_env):
    d = make_dataset(tmp_path)
    bad = d / (T_IMAGES + ".gz")
    bad.write_bytes(bad.read_bytes()[:40])
    msg = error_of(load_dataset, "mnist", tmp_path)
    assert str(bad) in msg and "corrupt gzip" in msg


# ---------------------------------------------------------------------------------------------
# the built-in subset


def test_builtin_shapes_and_labels(monkeypatch):
    monkeypatch.delenv("MFSNN_DATA", raising=False)
    ds = load_dataset("builtin", data_dir="/does/not/matter")
    assert ds.name == "builtin" and ds.source == "built-in"
    assert ds.train.images.shape == (3000, 28, 28) and ds.train.labels.shape == (3000,)
    assert ds.test.images.shape == (1000, 28, 28) and ds.test.labels.shape == (1000,)
    for split in (ds.train, ds.test):
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.uint8
        assert not split.images.flags.writeable and not split.labels.flags.writeable
        assert set(np.unique(split.labels).tolist()) == set(range(10))
    # Digit counts as stated in builtin/README.txt.
    assert np.bincount(ds.test.labels, minlength=10).tolist() == [85, 126, 116, 107, 110, 87, 87, 99, 89, 94]
    assert int(ds.train.labels[0]) == 5 and ds.test.labels[:3].tolist() == [7, 2, 1]  # MNIST's first digits
    assert load_dataset("builtin").train is ds.train  # cached in-process


def test_builtin_files_match_readme():
    builtin = Path(data.__file__).parent / "builtin"
    readme = (builtin / "README.txt").read_text()
    files = sorted(builtin.glob("*.gz"))
    assert [f.name for f in files] == sorted(n + ".gz" for n in (IMAGES, LABELS, T_IMAGES, T_LABELS))
    assert sum(f.stat().st_size for f in files) < 2_000_000
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert re.search(rf"^\s*{digest}\s+{re.escape(f.name)}$", readme, re.M), f.name
        assert f.read_bytes()[4:8] == b"\x00" * 4  # gzip mtime 0: reproducible


def _mnist_dir():
    env = os.environ.get("MFSNN_DATA")
    if not env:
        pytest.skip("MFSNN_DATA is not set: full-MNIST checks need $MFSNN_DATA/mnist/")
    d = Path(env) / "mnist"
    if not d.is_dir():
        pytest.skip(f"MFSNN_DATA={env} has no mnist/ subfolder")
    return d


def test_full_mnist_counts():
    d = _mnist_dir()
    ds = load_dataset("mnist")
    assert Path(ds.source) == d
    assert ds.train.images.shape == (60000, 28, 28) and ds.train.labels.shape == (60000,)
    assert ds.test.images.shape == (10000, 28, 28)
    assert np.bincount(ds.test.labels, minlength=10).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # The built-in subset is the head of the full set.
    b = load_dataset("builtin")
    np.testing.assert_array_equal(b.train.images, ds.train.images[:3000])
    np.testing.assert_array_equal(b.train.labels, ds.train.labels[:3000])
    np.testing.assert_array_equal(b.test.images, ds.test.images[:1000])
    np.testing.assert_array_equal(b.test.labels, ds.test.labels[:1000])


# ---------------------------------------------------------------------------------------------
# downsample2x2 and input_pixels


def _image_with_block(block):
    """A 28x28 image whose top-left 2x2 block is ``block`` (rest zero)."""
    img = np.zeros((28, 28), np.uint8)
    img[:2, :2] = block
    return img


@pytest.mark.parametrize(
    "block, expected",
    [
        ([[0, 1], [1, 1]], (0 + 1 + 1 + 1 + 2) >> 2),  # 5 >> 2 = 1: 0.75 rounds to 1
        ([[255, 255], [255, 254]], (255 + 255 + 255 + 254 + 2) >> 2),  # 1021 >> 2 = 255
        ([[1, 1], [0, 0]], (1 + 1 + 0 + 0 + 2) >> 2),  # 4 >> 2 = 1: 0.5 rounds half up
        ([[1, 0], [0, 0]], (1 + 0 + 0 + 0 + 2) >> 2),  # 3 >> 2 = 0: 0.25 rounds down
        ([[0, 0], [0, 0]], 0),
        ([[255, 255], [255, 255]], 255),  # 1022 >> 2 = 255: no overflow
        ([[10, 20], [30, 41]], (10 + 20 + 30 + 41 + 2) >> 2),  # 103 >> 2 = 25 (mean 25.25)
        ([[3, 3], [3, 5]], (3 + 3 + 3 + 5 + 2) >> 2),  # 16 >> 2 = 4 (mean 3.5 rounds up)
    ],
)
def test_downsample2x2_blocks(block, expected):
    out = downsample2x2(_image_with_block(block))
    assert out.shape == (14, 14) and out.dtype == np.uint8
    assert int(out[0, 0]) == expected
    assert not out[1:, :].any() and not out[:, 1:].any()


def test_downsample2x2_block_positions():
    # Blocks are aligned at even rows/columns: pixel (2i+di, 2j+dj) belongs to output (i, j).
    img = np.zeros((28, 28), np.uint8)
    img[27, 27] = img[26, 27] = img[27, 26] = 200  # bottom-right block: (600 + 2) >> 2 = 150
    img[1, 2] = 8  # block (0, 1): (8 + 2) >> 2 = 2
    out = downsample2x2(img)
    assert int(out[13, 13]) == 150 and int(out[0, 1]) == 2
    assert int(out.astype(np.int64).sum()) == 152


def test_downsample2x2_matches_python_ints():
    imgs = np.random.default_rng(7).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    out = downsample2x2(imgs)
    assert out.shape == (3, 14, 14) and out.dtype == np.uint8
    for n in range(3):
        for i in range(14):
            for j in range(14):
                s = sum(int(imgs[n, 2 * i + di, 2 * j + dj]) for di in (0, 1) for dj in (0, 1))
                assert int(out[n, i, j]) == (s + 2) // 4


@pytest.mark.parametrize("bad", [np.zeros((27, 28), np.uint8), np.zeros((2, 28), np.uint8),
                                 np.zeros((1, 1, 28, 28), np.uint8), np.full((28, 28), 256),
                                 np.zeros((28, 28), np.float32)])
def test_downsample2x2_rejects(bad):
    with pytest.raises(ValueError):
        downsample2x2(bad)


def test_input_pixels():
    imgs = np.random.default_rng(3).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    x784 = input_pixels(imgs, 784)
    assert x784.shape == (5, 784) and x784.dtype == np.uint8
    np.testing.assert_array_equal(x784[2], imgs[2].ravel())
    x196 = input_pixels(imgs, 196)
    assert x196.shape == (5, 196) and x196.dtype == np.uint8
    np.testing.assert_array_equal(x196, downsample2x2(imgs).reshape(5, 196))
    assert input_pixels(imgs[0], 196).shape == (196,)
    with pytest.raises(ValueError, match="784.*196"):
        input_pixels(imgs, 100)
