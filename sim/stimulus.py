"""Stimulus for RTL checks: built-in digits when the input size is 784 or 196, else seeded random
pixels (30 % zeros, so some inputs never spike)."""

import numpy as np

from ..golden.desire_config import DesireConfig


def make_stimulus(cfg: DesireConfig, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, N0), labels int64 (n,)) for ``cfg``'s topology."""
    n0, classes = cfg.topology[0], cfg.topology[-1]
    if n0 in (196, 784) and classes == 10:
        from ..golden.data import input_pixels, load_dataset
        split = load_dataset("builtin").train
        pick = np.random.default_rng(seed).permutation(len(split.labels))[:n]
        return input_pixels(split.images[pick], n0), np.asarray(split.labels[pick], dtype=np.int64)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, n0)).astype(np.uint8)
    images[rng.random(images.shape) < 0.3] = 0
    return images, rng.integers(0, classes, n).astype(np.int64)
