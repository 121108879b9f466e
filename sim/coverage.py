"""Saturation and range coverage of desire-BP samples, recomputed from the golden trace, and the
stress stimuli that reach every saturation point in full-core bit-exact runs.

The golden trace records values *after* saturation, so it cannot show whether a rail was reached.
``sample_coverage`` recomputes, with plain integer arithmetic from the recorded spikes and the weights
before the sample, the values *before* the two saturation points of docs/golden-spec.md:

* membrane (§4.2): V' = V_prev - (V_prev >> DS) + I_t, I_t = sum of W_l[j, i] over the inputs i that
  spiked at step t (layer 1: the masked input spikes of step t; layer l >= 2: layer l-1's spikes of
  step t-1, none at t = 0), V_prev = the recorded V after step t-1's reset (0 at t = 0);
* weight (§4.4): W + (want ? +mag : -mag) from the accumulated traces and the update shift.

It then applies the spec's saturation, firing, reset and update itself and raises ``ValueError`` when
the recorded membranes, spikes or new weights differ: a count taken on a trace that does not follow
the spec would be meaningless (a golden shortcut that skipped a needed saturation shows up here).

The range points have a declared width but no saturation: how close the presynaptic trace came to
2^(FX+DS), the spike count to T, the update accumulator A to T * 2^(FX+DS) and the desire sum D to
its signed DBITS range.

``STRESS_CASES`` are small configurations with constructed rail and near-rail weights whose golden
replay hits every saturation point; tests/test_sim_stress.py runs them bit-exact on every simulator.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from ..golden.desire_config import ROUNDING_SALT, DesireConfig
from ..golden.fixedpoint import signed_range
from ..golden.hashing import mix32, mix32_int
from .model import Sample, reference_sample

__all__ = ["SATURATION_POINTS", "Coverage", "sample_coverage", "run_coverage", "StressCase", "STRESS_CASES"]

#: the four saturation points of the datapath (docs/golden-spec.md §4.2, §4.4)
SATURATION_POINTS = ("membrane_high", "membrane_low", "weight_high", "weight_low")


@dataclass(frozen=True)
class Coverage:
    """How often each saturation point was hit and how far each unsaturated width was used.

    Rail counts: ``membrane_*`` counts (layer, step, neuron) positions whose pre-saturation V' lay
    beyond that rail; ``weight_*`` counts updated synapses whose W + delta lay beyond it.
    Range points: the largest value seen next to its bound (``*_bound``: the largest value the spec
    allows; desire: ``desire_limit`` = 2^(DBITS-1) of the layer where |D| used most of its range).
    """

    time_steps: int            # T: the spike-count bound
    trace_bound: int           # 2^(FX+DS): the largest trace value (XBITS = FX + DS + 1 holds it)
    accum_bound: int           # T * 2^(FX+DS): A stays below it
    samples: int = 0
    membrane_high: int = 0
    membrane_low: int = 0
    weight_high: int = 0
    weight_low: int = 0
    trace_max: int = 0
    trace_at_bound: int = 0    # (layer, step, input) positions with trace == trace_bound
    count_max: int = 0
    count_at_window: int = 0   # neurons that spiked at every one of the T steps
    accum_max: int = 0         # largest A_i of a synapse that was updated
    desire_max_abs: int = 0
    desire_limit: int = 0
    per_point_layers: dict = field(default_factory=dict, compare=False)   # point -> layers that hit it

    @classmethod
    def for_config(cls, cfg: DesireConfig) -> "Coverage":
        trace_bound = 1 << (cfg.trace_frac_bits + cfg.decay_shift)
        return cls(time_steps=cfg.time_steps, trace_bound=trace_bound, accum_bound=cfg.time_steps * trace_bound)

    @property
    def desire_fraction(self) -> float:
        """max |D| / 2^(DBITS-1), for display (0 without a hidden layer)."""
        return self.desire_max_abs / self.desire_limit if self.desire_limit else 0.0

    def missing(self, points=SATURATION_POINTS) -> list[str]:
        """The saturation points of ``points`` that were never hit."""
        return [point for point in points if getattr(self, point) == 0]

    def __add__(self, other: "Coverage") -> "Coverage":
        bounds = ("time_steps", "trace_bound", "accum_bound")
        if any(getattr(self, name) != getattr(other, name) for name in bounds):
            raise ValueError("coverage of different configurations cannot be added")
        summed = {name: getattr(self, name) + getattr(other, name)
                  for name in ("samples", "trace_at_bound", "count_at_window", *SATURATION_POINTS)}
        largest = {name: max(getattr(self, name), getattr(other, name))
                   for name in ("trace_max", "count_max", "accum_max")}
        # the desire sum that used more of its own range (cross-multiplied: exact, no float)
        other_uses_more = other.desire_max_abs * self.desire_limit > self.desire_max_abs * other.desire_limit
        desire = other if other_uses_more or not self.desire_limit else self
        layers = {point: sorted(set(self.per_point_layers.get(point, [])) | set(other.per_point_layers.get(point, [])))
                  for point in SATURATION_POINTS}
        return replace(self, **summed, **largest, desire_max_abs=desire.desire_max_abs,
                       desire_limit=desire.desire_limit, per_point_layers={k: v for k, v in layers.items() if v})

    def __str__(self) -> str:
        def where(point):
            layers = self.per_point_layers.get(point)
            return f" (layers {','.join(map(str, layers))})" if layers else ""
        return "\n".join([
            f"coverage over {self.samples} samples",
            f"  membrane rails: high {self.membrane_high}{where('membrane_high')}, "
            f"low {self.membrane_low}{where('membrane_low')}",
            f"  weight rails:   high {self.weight_high}{where('weight_high')}, "
            f"low {self.weight_low}{where('weight_low')}",
            f"  trace max {self.trace_max} of {self.trace_bound} ({self.trace_at_bound} at the bound)",
            f"  spike count max {self.count_max} of {self.time_steps} ({self.count_at_window} neurons at T)",
            f"  update accumulator max {self.accum_max} (< {self.accum_bound})",
            f"  |desire sum| max {self.desire_max_abs} of {self.desire_limit} ({self.desire_fraction:.1%} of DBITS)",
        ])


def _layer_inputs(trace, layer: int) -> np.ndarray:
    """(T, N_{l-1}) spikes layer ``layer`` integrates: the masked input spikes of the same step
    (layer 1), or layer l-1's spikes one step late (layer >= 2, nothing at t = 0)."""
    if layer == 1:
        return np.asarray(trace["encode/0/spikes"], dtype=np.int64)
    below = np.asarray(trace[f"forward/{layer - 1}/spikes"], dtype=np.int64)
    delayed = np.zeros_like(below)
    delayed[1:] = below[:-1]
    return delayed


def _keep_mask(trace, layer: int, size: int) -> np.ndarray:
    key = f"forward/{layer}/mask"
    return np.asarray(trace[key], dtype=bool) if key in trace else np.ones(size, dtype=bool)


def _membrane_hits(cfg: DesireConfig, weights_l, inputs, trace, layer: int, train: bool):
    """(V' above the high rail, below the low rail) over all steps and neurons of one layer."""
    lo, hi = signed_range(cfg.membrane_bits)
    recorded_v = np.asarray(trace[f"forward/{layer}/v"], dtype=np.int64)
    recorded_spikes = np.asarray(trace[f"forward/{layer}/spikes"], dtype=bool)
    keep = _keep_mask(trace, layer, weights_l.shape[0])
    threshold = cfg.train_threshold(layer) if train else cfg.theta
    currents = inputs @ np.asarray(weights_l, dtype=np.int64).T        # (T, N_l), int64: exact
    high = low = 0
    v_prev = np.zeros(weights_l.shape[0], dtype=np.int64)
    for t in range(cfg.time_steps):
        v_pre = v_prev - (v_prev >> cfg.decay_shift) + currents[t]
        high += int((v_pre > hi).sum())
        low += int((v_pre < lo).sum())
        v_sat = np.clip(v_pre, lo, hi)
        fire = (v_sat >= threshold) & keep
        v_after = np.where(fire, v_sat - threshold, v_sat)
        differs = np.flatnonzero((fire != recorded_spikes[t]) | (v_after != recorded_v[t]))
        if differs.size:
            j = differs[0]
            raise ValueError(f"trace does not follow docs/golden-spec.md §4.2 at layer {layer}, step {t}, neuron {j}: "
                             f"V' = {v_pre[j]} gives V {v_after[j]} spike {int(fire[j])}, "
                             f"recorded V {recorded_v[t, j]} spike {int(recorded_spikes[t, j])}")
        v_prev = recorded_v[t]
    return high, low


def _update_hits(cfg: DesireConfig, weights_l, trace, layer: int, sample: Sample):
    """(W + delta above the high rail, below the low rail, largest A of an updated row) of one layer."""
    lo, hi = signed_range(cfg.weight_bits)
    weights_l = np.asarray(weights_l, dtype=np.int64)
    spikes = np.asarray(trace[f"forward/{layer}/spikes"], dtype=np.int64)      # (T, N_l)
    traces = np.asarray(trace[f"forward/{layer}/trace"], dtype=np.int64)       # (T, N_{l-1})
    care = np.asarray(trace[f"desire/{layer}/care"], dtype=bool)
    want = np.asarray(trace[f"desire/{layer}/want"], dtype=bool)
    rows = care & _keep_mask(trace, layer, weights_l.shape[0]) & (spikes.sum(axis=0) > 0)
    accum = spikes.T @ traces                                                   # A[j, i], exact
    shift = cfg.update_shift(sample.epoch)
    if shift <= 0:
        magnitude = accum << -shift
    elif cfg.rounding == "nearest":
        magnitude = (accum + (1 << (shift - 1))) >> shift
    else:
        key = np.uint32(mix32_int((cfg.seed ^ ROUNDING_SALT ^ sample.step) & 0xFFFFFFFF))
        j, i = np.indices(weights_l.shape, dtype=np.uint32)
        offsets = mix32(key ^ np.uint32(layer << 24) ^ (j << np.uint32(12)) ^ i) & np.uint32((1 << shift) - 1)
        magnitude = (accum + offsets.astype(np.int64)) >> shift
    w_pre = np.where(want[:, None], weights_l + magnitude, weights_l - magnitude)
    high = int((w_pre[rows] > hi).sum())
    low = int((w_pre[rows] < lo).sum())
    updated = np.where(rows[:, None], np.clip(w_pre, lo, hi), weights_l)
    recorded = np.asarray(trace[f"update/{layer}/weights"], dtype=np.int64)
    if not np.array_equal(updated, recorded):
        j, i = np.argwhere(updated != recorded)[0]
        raise ValueError(f"trace does not follow docs/golden-spec.md §4.4 at layer {layer}, post neuron {j}, input {i}: "
                         f"W + delta = {w_pre[j, i]} gives {updated[j, i]}, recorded {recorded[j, i]}")
    return high, low, int(accum[rows].max()) if rows.any() else 0


def sample_coverage(cfg: DesireConfig, weights, sample: Sample, trace) -> Coverage:
    """Coverage of one sample from its golden trace (``reference_sample(...).trace`` or
    ``train_sample(..., trace=Trace())``) and the weights *before* the sample.

    Raises ``ValueError`` if the recorded membranes, spikes or updated weights do not follow the
    spec's saturation, firing, reset and update from the recomputed pre-saturation values.
    """
    hits = dict.fromkeys(SATURATION_POINTS, 0)
    layers = {point: [] for point in SATURATION_POINTS}
    accum_max = 0
    for layer in range(1, cfg.layers + 1):
        found = dict(zip(("membrane_high", "membrane_low"), _membrane_hits(
            cfg, weights[layer - 1], _layer_inputs(trace, layer), trace, layer, sample.train)))
        if sample.train:
            high, low, layer_accum = _update_hits(cfg, weights[layer - 1], trace, layer, sample)
            found.update(weight_high=high, weight_low=low)
            accum_max = max(accum_max, layer_accum)
        for point, count in found.items():
            hits[point] += count
            if count:
                layers[point].append(layer)
    traces = [np.asarray(trace[f"forward/{layer}/trace"]) for layer in range(1, cfg.layers + 1)]
    counts = [np.asarray(trace[f"forward/{layer}/counts"]) for layer in range(1, cfg.layers + 1)]
    cov = Coverage.for_config(cfg)
    desire_max_abs = desire_limit = 0
    for layer in range(1, cfg.layers):
        key = f"desire/{layer}/sum"
        if key not in trace:          # inference records no desire
            continue
        largest = int(np.abs(np.asarray(trace[key], dtype=np.int64)).max())
        limit = 1 << (cfg.desire_bits(layer + 1) - 1)    # D into layer l is formed from W_{l+1}
        if desire_limit == 0 or largest * desire_limit > desire_max_abs * limit:
            desire_max_abs, desire_limit = largest, limit
    return replace(
        cov, samples=1, **hits,
        trace_max=max(int(x.max()) for x in traces),
        trace_at_bound=sum(int((x == cov.trace_bound).sum()) for x in traces),
        count_max=max(int(c.max()) for c in counts),
        count_at_window=sum(int((c == cfg.time_steps).sum()) for c in counts),
        accum_max=accum_max, desire_max_abs=desire_max_abs, desire_limit=desire_limit,
        per_point_layers={point: hit_layers for point, hit_layers in layers.items() if hit_layers})


def run_coverage(cfg: DesireConfig, weights, samples) -> Coverage:
    """Coverage of a run: the golden model replays ``samples`` in order, weights chained sample to sample."""
    total = Coverage.for_config(cfg)
    weights = [np.asarray(w, dtype=np.int64) for w in weights]
    for sample in samples:
        expected = reference_sample(cfg, weights, sample)
        total = total + sample_coverage(cfg, weights, sample, expected.trace)
        weights = expected.weights
    return total


def rail_weights(cfg: DesireConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Initial weights at and next to the rails, so every saturation point is within one step.

    Rows alternate excitatory (even j) and inhibitory (odd j): 75% of a row's entries sit within
    3 LSB of its own rail, the others within 3 LSB of the opposite rail, and 15% of all entries are
    uniform over the whole range. Excitatory rows drive V past the high rail and fire every step;
    inhibitory rows drive V past the low rail. Any increase of a near-high entry crosses the high
    rail, and a spiking row's near-low entries cross the low rail on a want = -1 update.
    """
    lo, hi = signed_range(cfg.weight_bits)
    weights = []
    for layer in range(1, cfg.layers + 1):
        shape = (cfg.topology[layer], cfg.topology[layer - 1])
        excitatory = (np.arange(shape[0]) % 2 == 0)[:, None]
        own_rail = rng.random(shape) < 0.75
        near_high, near_low = hi - rng.integers(0, 4, shape), lo + rng.integers(0, 4, shape)
        w = np.where(excitatory == own_rail, near_high, near_low)
        weights.append(np.where(rng.random(shape) < 0.15, rng.integers(lo, hi + 1, shape), w).astype(np.int64))
    return weights


def rail_pixels(size: int, rng: np.random.Generator) -> np.ndarray:
    """40% pixels at 255 (spike every step: traces reach their bound), 30% at 0 (never spike), the rest uniform."""
    choice = rng.random(size)
    return np.where(choice < 0.4, 255, np.where(choice < 0.7, 0, rng.integers(1, 255, size))).astype(np.uint8)


@dataclass(frozen=True)
class StressCase:
    """A small full-core configuration whose golden replay hits the saturation points ``points``.

    ``stimulus()`` draws the initial weights (``rail_weights``) and the samples from ``seed``:
    ``rail_pixels`` images, labels cycling over the classes (each output neuron is wanted +1 on
    some samples, -1 on the others), training samples on consecutive steps from 0, epoch 0, so
    that ``run_bitexact(..., train=case.train)`` streams the same samples.
    """

    name: str
    cfg: DesireConfig
    parallelism: int
    seed: int
    train: tuple[bool, ...]          # one entry per sample
    points: tuple[str, ...] = SATURATION_POINTS

    def stimulus(self) -> tuple[list[np.ndarray], list[Sample]]:
        rng = np.random.default_rng(self.seed)
        weights = rail_weights(self.cfg, rng)
        samples, step = [], 0
        for q, train in enumerate(self.train):
            samples.append(Sample(rail_pixels(self.cfg.topology[0], rng), q % self.cfg.topology[-1], train, step, 0))
            step += int(train)
        return weights, samples


STRESS_CASES = [
    # W16 with 3 fractional bits: one weight is twice the 15-bit membrane range. SH = 5, hidden dropout
    # (a dropped neuron never resets), T = 40 takes the traces to their bound.
    StressCase("8-6-3-W16f3-T40-P2", DesireConfig(
        topology=(8, 6, 3), time_steps=40, weight_bits=16, weight_frac_bits=3, lr_shift=0, dropout=(0.0, 0.3)),
        parallelism=2, seed=11, train=(True, True, True, False)),
    # The W8 profile (FW 5, 17-bit membrane: out of reach of 10 inputs) with 2 trace fractional bits:
    # SH = -3, so every update is A << 3 and crosses a rail. T = 63 fills the 6-bit spike count,
    # error margin 0 gives the label's error weight its full range (desire sum).
    StressCase("10-7-3-W8-T63-SHneg-P4", DesireConfig.for_weight_bits(
        8, topology=(10, 7, 3), time_steps=63, error_margin=0, trace_frac_bits=2, lr_shift=0),
        parallelism=4, seed=41, train=(True, True, True, False), points=("weight_high", "weight_low")),
    # Three layers, W10 with no fractional bits (a 12-bit membrane that five rail weights overflow in
    # one step), decay shift 1, stochastic rounding, pow2 error, input and hidden dropout, P = 1.
    StressCase("9-6-5-3-W10f0-DS1-stoch-P1", DesireConfig(
        topology=(9, 6, 5, 3), time_steps=31, weight_bits=10, weight_frac_bits=0, decay_shift=1, lr_shift=0,
        rounding="stochastic", dropout=(0.2, 0.4), error_mode="pow2"),
        parallelism=1, seed=6, train=(True, True, True, False)),
    # 32-bit weights with the W24 fraction (FW 20): the membrane is 32 bits too, so two rail weights
    # overflow it, and sums, desire and updates cross the 32-bit word boundary of the simulators.
    # SH = 0 exactly (the update adds A unshifted, no rounding term).
    StressCase("6-5-4-W32f20-SH0-P4", DesireConfig(
        topology=(6, 5, 4), time_steps=24, weight_bits=32, weight_frac_bits=20, lr_shift=12),
        parallelism=4, seed=34, train=(True, True, True, False)),
    # Decay shift 3: |V| grows to 8 (max|I| + 1) before the decay balances the input. One step's
    # current stays inside the 20-bit membrane (W16, FW 8), the accumulation over steps leaves it:
    # the regime where the golden model once skipped saturation (its bound assumed DS <= 2).
    StressCase("48-4-3-W16f8-DS3-P4", DesireConfig(
        topology=(48, 4, 3), time_steps=48, decay_shift=3, weight_bits=16, weight_frac_bits=8, lr_shift=4),
        parallelism=4, seed=3, train=(True, True, True, False), points=("membrane_high", "membrane_low")),
]
