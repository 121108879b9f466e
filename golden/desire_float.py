"""Desire backpropagation, float reference with the authors' semantics (notes/desire-bp.md §1-7).

Same structure as the integer model so the two can be compared step by step; the differences are
exactly the ones the authors' code has: real-valued pixel/255 input coder, V * 0.75 decay, inverted
dropout scaling of spikes, real error magnitudes |want - c/TM| in the hidden desire, and
lr = lr0 * exp(-lr_decay * epoch) with no weight clipping. Dropout masks come from the same integer
hash as the integer model, so both see the same masks for the same seed and step.
"""

import math
from dataclasses import dataclass

import numpy as np

from .desire import classify, dropout_masks, satisfied_care
from .desire_config import DesireConfig

__all__ = ["FloatSettings", "forward_float", "train_sample_float", "infer_counts_float", "classify"]


@dataclass(frozen=True)
class FloatSettings:
    """Authors' defaults (desire_pytorch.py argparse) that have no integer counterpart."""

    lr: float = 1e-5
    lr_decay: float = 4e-2

    def learning_rate(self, epoch: int) -> float:
        return self.lr * math.exp(-self.lr_decay * epoch)


def _decay(cfg: DesireConfig) -> float:
    return 1.0 - 2.0 ** -cfg.decay_shift


def encode_float(cfg: DesireConfig, pixels) -> np.ndarray:
    """V += k/255 (float32 as in the authors' code), spike iff V >= 1, V -= 1. (..., N0) -> (..., T, N0)."""
    p = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
    vin = np.zeros(p.shape, dtype=np.float32)
    out = np.zeros(p.shape[:-1] + (cfg.time_steps,) + p.shape[-1:], dtype=np.uint8)
    for t in range(cfg.time_steps):
        vin = vin + p
        spike = vin >= np.float32(1.0)
        vin = np.where(spike, vin - np.float32(1.0), vin)
        out[..., t, :] = spike
    return out


def forward_float(cfg: DesireConfig, weights, input_spikes, masks=None, train: bool = False):
    """Returns (spikes, counts, traces) per layer (index 0 = input), as the integer ``forward``."""
    decay = _decay(cfg)
    spikes = [np.asarray(input_spikes, dtype=np.uint8)]
    if masks is not None:
        spikes[0] = spikes[0] & masks[0].astype(np.uint8)
    counts, traces = [spikes[0].sum(axis=-2)], [None]
    for layer in range(1, cfg.layers + 1):
        source = spikes[layer - 1]
        if layer > 1:
            source = np.concatenate([np.zeros_like(source[..., :1, :]), source[..., :-1, :]], axis=-2)
        scale = 1.0 / (1.0 - cfg.drop_probability(layer - 1)) if train else 1.0
        currents = (source.astype(np.float64) * scale) @ weights[layer - 1].T
        keep = masks[layer] if masks is not None else True
        v = np.zeros(currents.shape[:-2] + currents.shape[-1:])
        out = np.zeros(currents.shape, dtype=np.uint8)
        for t in range(cfg.time_steps):
            v = v * decay + currents[..., t, :]
            fire = (v >= 1.0) & keep
            v = v - fire
            out[..., t, :] = fire
        spikes.append(out)
        counts.append(out.sum(axis=-2))
        if train:
            x = np.zeros(source.shape[:-2] + source.shape[-1:])
            trace = np.zeros(source.shape)
            for t in range(cfg.time_steps):
                x = decay * x + source[..., t, :]
                trace[..., t, :] = x
            traces.append(trace)
        else:
            traces.append(None)
    return spikes, counts, traces


def train_sample_float(cfg: DesireConfig, settings: FloatSettings, weights, pixels, label: int,
                       step: int, epoch: int):
    """One online sample of the authors' algorithm; returns (new float64 weights, output counts)."""
    masks = dropout_masks(cfg, step)
    spikes, counts, traces = forward_float(cfg, weights, encode_float(cfg, pixels), masks, train=True)
    L, tm = cfg.layers, cfg.target_count
    care, want = [None] * (L + 1), [None] * (L + 1)
    want[L] = np.arange(cfg.topology[-1]) == label
    error = np.where(want[L], 1.0 - counts[L] / tm, counts[L] / tm)
    care[L] = error > cfg.output_desire_threshold
    for layer in range(L, 1, -1):
        e = np.abs(want[layer] - counts[layer] / tm)
        g = np.where(care[layer] & masks[layer], np.where(want[layer], 1.0, -1.0), 0.0)
        d = (g * e) @ weights[layer - 1]
        care[layer - 1], want[layer - 1] = np.abs(d) >= cfg.hidden_desire_threshold, d > 0
        care[layer - 1] = satisfied_care(cfg, care[layer - 1], want[layer - 1], counts[layer - 1])
    lr = settings.learning_rate(epoch)
    new = []
    for layer in range(1, L + 1):
        w = np.array(weights[layer - 1], dtype=np.float64, copy=True)
        rows = np.flatnonzero(care[layer] & masks[layer] & (counts[layer] > 0))
        if rows.size:
            accum = spikes[layer][:, rows].T.astype(np.float64) @ traces[layer]
            w[rows] += lr * np.where(want[layer][rows], 1.0, -1.0)[:, None] * accum
        new.append(w)
    return new, counts[L]


def infer_counts_float(cfg: DesireConfig, weights, pixels) -> np.ndarray:
    return forward_float(cfg, weights, encode_float(cfg, pixels))[1][cfg.layers]
