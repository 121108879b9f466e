"""Host side of the RTL checks, shared by the Amaranth-simulator and cocotb testbenches.

* weight word packing for the core's weight port (block-major: word b*N_{l-1} + i, lane k = W[b*P+k, i]);
* ``DebugDecoder``: RTL debug records -> a ``golden.trace.Trace`` with the golden model's keys;
* ``reference_sample``: the golden model's result and trace for one sample (training or inference);
* ``Checker``: per-sample bit-exact comparison, first divergence, counters, ``Report``.
"""

from dataclasses import dataclass, field

import numpy as np

from ..golden import desire as golden
from ..golden.desire_config import DesireConfig
from ..golden.trace import Trace, first_divergence
from ..rtl.core import CoreParams, DebugKind

MISSING = -(1 << 62)   # value of a trace position the RTL never reported
PHASES = ("encode", "forward", "desire", "update")


# ---------------------------------------------------------------- weights
def pack_weights(params: CoreParams, layer: int, w: np.ndarray) -> list[int]:
    """Words of weight layer ``layer`` (1-based) from W_l (N_l, N_{l-1}), for the weight port."""
    P, WB = params.P, params.cfg.weight_bits
    n_out, n_in = params.sizes[layer], params.sizes[layer - 1]
    w = np.asarray(w, dtype=np.int64)
    assert w.shape == (n_out, n_in), (w.shape, (n_out, n_in))
    padded = np.zeros((params.blocks(layer) * P, n_in), dtype=np.int64)
    padded[:n_out] = w
    lanes = padded.reshape(params.blocks(layer), P, n_in).transpose(0, 2, 1).reshape(-1, P)  # (b*n_in+i, k)
    mask = (1 << WB) - 1
    words = []
    for row in lanes:
        word = 0
        for k, val in enumerate(row.tolist()):
            word |= (val & mask) << (k * WB)
        words.append(word)
    return words


def unpack_weights(params: CoreParams, layer: int, words) -> np.ndarray:
    P, WB = params.P, params.cfg.weight_bits
    n_out, n_in = params.sizes[layer], params.sizes[layer - 1]
    mask, sign = (1 << WB) - 1, 1 << (WB - 1)
    lanes = np.zeros((len(words), P), dtype=np.int64)
    for a, word in enumerate(words):
        for k in range(P):
            v = (int(word) >> (k * WB)) & mask
            lanes[a, k] = v - (1 << WB) if v & sign else v
    full = lanes.reshape(params.blocks(layer), n_in, P).transpose(0, 2, 1).reshape(-1, n_in)
    return full[:n_out]


# ---------------------------------------------------------------- debug trace
def _signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def decode_debug_word(params: CoreParams, word: int) -> tuple:
    """Raw debug payload integer -> (kind, layer, t, n, values, aux) (layout: ``CoreParams.debug_layout``)."""
    lanes, vb, ab = params.debug_lanes, params.debug_value_bits, params.debug_aux_bits
    kind, layer, t, n = word & 0xF, (word >> 4) & 0xF, (word >> 8) & 0xFF, (word >> 16) & 0xFFFF
    pos = 32
    values = [_signed(word >> (pos + q * vb), vb) for q in range(lanes)]
    pos += lanes * vb
    aux = [(word >> (pos + q * ab)) & ((1 << ab) - 1) for q in range(lanes)]
    return kind, layer, t, n, values, aux


class DebugDecoder:
    """Turns the RTL's debug records of one sample into a Trace keyed like the golden model's."""

    def __init__(self, params: CoreParams, train: bool):
        self.p, self.train = params, train
        N, T = params.sizes, params.cfg.time_steps
        self.trace = Trace()
        full = lambda shape: np.full(shape, MISSING, dtype=np.int64)
        if train:
            self.trace["encode/0/mask"] = full(N[0]) if params.maskable(0) else np.ones(N[0], dtype=np.int64)
        self.trace["encode/0/spikes"] = full((T, N[0]))
        for l in range(1, params.L + 1):
            if train:
                self.trace[f"forward/{l}/mask"] = full(N[l]) if params.maskable(l) else np.ones(N[l], dtype=np.int64)
                self.trace[f"forward/{l}/trace"] = full((T, N[l - 1]))
            self.trace[f"forward/{l}/v"] = full((T, N[l]))
            self.trace[f"forward/{l}/spikes"] = full((T, N[l]))
            self.trace[f"forward/{l}/counts"] = full(N[l])
        if train:
            for l in range(params.L, 0, -1):
                if l < params.L:
                    self.trace[f"desire/{l}/sum"] = full(N[l])
                self.trace[f"desire/{l}/care"] = full(N[l])
                self.trace[f"desire/{l}/want"] = full(N[l])
        self.records = 0

    def _put(self, key, index, n0, values):
        arr = self.trace.get(key)
        if arr is None:
            return
        limit = arr.shape[-1]
        for q, val in enumerate(values):
            if n0 + q < limit:
                if index is None:
                    arr[n0 + q] = val
                else:
                    arr[index, n0 + q] = val

    def add(self, kind, layer, t, n, values, aux):
        self.records += 1
        P, T, L = self.p.P, self.p.cfg.time_steps, self.p.L
        if kind == DebugKind.MASK:
            key = "encode/0/mask" if layer == 0 else f"forward/{layer}/mask"
            self._put(key, None, n, aux[:P])
        elif kind == DebugKind.SCAN:
            self._put(f"forward/{layer}/trace", t, n, values[:P])
            if layer == 1:
                self._put("encode/0/spikes", t, n, [a & 1 for a in aux[:P]])
        elif kind == DebugKind.NEURON:
            self._put(f"forward/{layer}/v", t, n, values[:P])
            self._put(f"forward/{layer}/spikes", t, n, [a & 1 for a in aux[:P]])
            if t == T - 1:
                self._put(f"forward/{layer}/counts", None, n, [a >> 1 for a in aux[:P]])
        elif kind == DebugKind.DESIRE_OUT:
            self._put(f"desire/{L}/care", None, n, [a & 1 for a in aux[:P]])
            self._put(f"desire/{L}/want", None, n, [(a >> 1) & 1 for a in aux[:P]])
        elif kind == DebugKind.DESIRE_HID:
            self._put(f"desire/{layer}/sum", None, n, values[:1])
            self._put(f"desire/{layer}/care", None, n, [aux[0] & 1])
            self._put(f"desire/{layer}/want", None, n, [(aux[0] >> 1) & 1])
        else:
            raise ValueError(f"unknown debug record kind {kind}")


# ---------------------------------------------------------------- reference
@dataclass
class Sample:
    pixels: np.ndarray
    label: int
    train: bool = True
    step: int = 0
    epoch: int = 0


@dataclass
class Expected:
    trace: Trace
    weights: list
    counts: np.ndarray
    pred: int          # -1 on a tie (golden ``classify``)


def reference_sample(cfg: DesireConfig, weights, sample: Sample) -> Expected:
    """The golden model's outcome of one sample: ``train_sample`` (training) or ``forward`` (inference)."""
    if sample.train:
        trace = Trace()
        new, counts = golden.train_sample(cfg, weights, sample.pixels, sample.label, sample.step, sample.epoch,
                                          trace=trace)
    else:
        trace = Trace()
        fwd = golden.forward(cfg, weights, golden.encode(cfg, sample.pixels))
        trace.record("encode", 0, "spikes", fwd.spikes[0])
        for l in range(1, cfg.layers + 1):
            trace.record("forward", l, "v", fwd.v[l])
            trace.record("forward", l, "spikes", fwd.spikes[l])
            trace.record("forward", l, "counts", fwd.counts[l])
        new, counts = [np.array(w, dtype=np.int64, copy=True) for w in weights], fwd.counts[cfg.layers]
    for l in range(1, cfg.layers + 1):
        trace.record("update", l, "weights", new[l - 1])
    return Expected(trace, new, np.asarray(counts, dtype=np.int64), int(golden.classify(counts)))


# ---------------------------------------------------------------- checking
@dataclass
class SampleResult:
    """What the RTL reported for one sample."""
    counts: np.ndarray
    pred: int          # -1 when the RTL flagged a tie
    cycles: int
    weights: list | None = None   # read back after the sample (None: not read)
    trace: Trace | None = None    # decoded debug records (None: debug off)


@dataclass
class Report:
    """Outcome of a bit-exact run: counters of compared values, cycles, first divergence."""
    config: str = ""
    simulator: str = ""
    samples: int = 0
    train_samples: int = 0
    spikes: int = 0
    membranes: int = 0
    traces: int = 0
    desires: int = 0
    weights: int = 0
    counts: int = 0
    predictions: int = 0
    correct: int = 0
    cycles_train: list = field(default_factory=list)
    cycles_infer: list = field(default_factory=list)
    mismatch: str | None = None
    sim_cycles: int = 0
    sim_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mismatch is None and self.samples > 0

    def __str__(self) -> str:
        lines = [f"bit-exact check {self.config} on {self.simulator}: "
                 + ("ALL MATCHED" if self.ok else "MISMATCH"),
                 f"  samples compared: {self.samples} ({self.train_samples} training, "
                 f"{self.samples - self.train_samples} inference)",
                 f"  values compared: {self.spikes} spikes, {self.membranes} membranes, {self.traces} traces, "
                 f"{self.desires} desires (sum/care/want), {self.counts} counts, {self.predictions} predictions, "
                 f"{self.weights} weights"]
        if self.cycles_train:
            lines.append(f"  cycles per training sample: mean {np.mean(self.cycles_train):.0f} "
                         f"(min {min(self.cycles_train)}, max {max(self.cycles_train)})")
        if self.cycles_infer:
            lines.append(f"  cycles per inference sample: mean {np.mean(self.cycles_infer):.0f} "
                         f"(min {min(self.cycles_infer)}, max {max(self.cycles_infer)})")
        if self.predictions:
            lines.append(f"  correct predictions on these samples (RTL and golden agree on every one): "
                         f"{self.correct}/{self.predictions}")
        if self.sim_seconds:
            lines.append(f"  simulation: {self.sim_cycles} cycles in {self.sim_seconds:.1f} s "
                         f"({self.sim_cycles / self.sim_seconds:.0f} cycles/s)")
        if self.mismatch:
            lines.append("  " + self.mismatch)
        return "\n".join(lines)


def _rank(key):
    phase = key.split("/")[0]
    return PHASES.index(phase) if phase in PHASES else len(PHASES)


def earliest_divergence(expected: Trace, got: Trace):
    """The divergence that happened first: by phase, then time step, then layer (each key via
    ``first_divergence``). Keys of ``expected`` missing in ``got`` are skipped (not reported by the RTL)."""
    found = []
    for key in expected:
        if key not in got:
            continue
        d = first_divergence(expected, got, keys=[key])
        if d is not None:
            per_step = np.asarray(expected[key]).ndim == 2
            t = d.index[0] if per_step and d.index else 1 << 30   # per-sample values: after every step
            found.append(((_rank(key), t, d.layer if d.phase != "desire" else -d.layer), d))
    if not found:
        return None
    return min(found, key=lambda item: item[0])[1]


def describe(d, sample_index: int) -> str:
    """'sample s, phase p, layer l, step t, neuron n: expected x, got y' (plus the raw divergence)."""
    parts = [f"first divergence at sample {sample_index}", f"phase {d.phase}", f"layer {d.layer}", f"{d.name}"]
    per_step = d.name in ("v", "spikes", "trace") and len(d.index) == 2
    if per_step:
        parts.append(f"time step {d.index[0]}")
        parts.append(f"{'input' if d.name == 'trace' else 'neuron'} {d.index[1]}")
    elif d.name == "weights" and len(d.index) == 2:
        parts.append(f"post neuron {d.index[0]}, input {d.index[1]}")
    elif len(d.index) == 1:
        parts.append(f"{'input' if d.phase == 'encode' else 'neuron'} {d.index[0]}")
    got = "never reported" if d.got == MISSING else d.got
    parts.append(f"expected {d.expected}, got {got}")
    return ", ".join(parts)


class Checker:
    """Compares RTL sample results with the golden model, sample after sample (weights chain)."""

    def __init__(self, cfg: DesireConfig, weights, report: Report):
        self.cfg = cfg
        self.weights = [np.array(w, dtype=np.int64, copy=True) for w in weights]
        self.report = report
        self.index = 0

    def expect(self, sample: Sample) -> Expected:
        return reference_sample(self.cfg, self.weights, sample)

    def check(self, sample: Sample, expected: Expected, got: SampleResult) -> bool:
        """Record one sample; returns False (and fills ``report.mismatch``) on the first difference."""
        r, idx = self.report, self.index
        self.index += 1
        r.samples += 1
        r.train_samples += int(sample.train)
        (r.cycles_train if sample.train else r.cycles_infer).append(int(got.cycles))
        if got.trace is not None and r.mismatch is None:
            got_trace = Trace(got.trace)
            if got.weights is not None:
                for l, w in enumerate(got.weights, start=1):
                    got_trace[f"update/{l}/weights"] = np.asarray(w, dtype=np.int64)
            d = earliest_divergence(expected.trace, got_trace)
            if d is not None:
                r.mismatch = describe(d, idx)
                return False
            for key, arr in expected.trace.items():
                if key not in got_trace:
                    continue
                n = int(np.asarray(arr).size)
                name = key.split("/")[2]
                if name == "spikes":
                    r.spikes += n
                elif name == "v":
                    r.membranes += n
                elif name == "trace":
                    r.traces += n
                elif key.startswith("desire/"):
                    r.desires += n
        if not np.array_equal(expected.counts, np.asarray(got.counts)):
            j = int(np.flatnonzero(expected.counts != np.asarray(got.counts))[0])
            r.mismatch = (f"first divergence at sample {idx}, phase forward, layer {self.cfg.layers}, counts, "
                          f"neuron {j}: expected {expected.counts[j]}, got {got.counts[j]}")
            return False
        r.counts += int(expected.counts.size)
        if expected.pred != got.pred:
            r.mismatch = (f"first divergence at sample {idx}, phase forward, layer {self.cfg.layers}, prediction: "
                          f"expected {expected.pred}, got {got.pred}")
            return False
        r.predictions += 1
        r.correct += int(expected.pred == sample.label)
        if got.weights is not None:
            for l, (w_exp, w_got) in enumerate(zip(expected.weights, got.weights), start=1):
                if not np.array_equal(w_exp, w_got):
                    jj, ii = (int(x) for x in np.argwhere(w_exp != w_got)[0])
                    r.mismatch = (f"first divergence at sample {idx}, phase update, layer {l}, weights, "
                                  f"post neuron {jj}, input {ii}: expected {w_exp[jj, ii]}, got {w_got[jj, ii]}")
                    return False
                r.weights += int(w_exp.size)
        self.weights = expected.weights
        return True
