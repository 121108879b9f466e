"""The interface every learning rule's golden model offers to the trainer and the CLI.

A learner owns its weights and settings and is rule- and arithmetic-specific; the trainer
(``mfsnn.golden.train``) is generic: it shuffles, chunks, shows progress, evaluates and saves.
Images always arrive as raw uint8 (N, 28, 28); each learner does its own input preprocessing
(e.g. ``data.input_pixels`` for 196-input topologies).
"""

from typing import Protocol

import numpy as np


class Learner(Protocol):
    rule: str     # "desire" | "stidi"
    arith: str    # "fixed" | "float"

    def train_samples(self, images: np.ndarray, labels: np.ndarray,
                      first_step: int, epoch: int) -> np.ndarray:
        """Train online (batch size 1) on the samples in the given order.

        ``first_step`` is the global 0-based training-sample counter of ``images[0]`` (never reset
        across epochs); sample k has counter ``first_step + k``. Returns a bool array: whether
        each sample was classified correctly (strict rule) before its own update.
        """

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Inference-only class per image (int64); -1 where the rule's strict tie rule says 'no class'."""

    def settings(self) -> dict:
        """JSON-serialisable settings that, with the weights, reproduce this learner exactly."""

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """Every array of learned state (weights, latent weights, thresholds) by name."""
