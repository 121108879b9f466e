"""Host side of the RTL checks, shared by the Amaranth-simulator and cocotb testbenches.

* weight word packing for the core's weight port (block-major: word b*N_{l-1} + i, lane k = W[b*P+k, i]);
* ``DebugDecoder``: RTL debug records -> a ``golden.trace.Trace`` with the golden model's keys;
* ``reference_sample``: the golden model's result and trace for one sample (training or inference);
* ``Checker``: per-sample bit-exact comparison, first divergence, counters, ``Report``.
"""

from dataclasses import asdict, dataclass, field

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from ..golden import desire as golden
from ..golden.desire_config import DesireConfig
from ..golden.trace import Trace, first_divergence
from ..rtl.core import CoreParams, DebugKind

MISSING = -(1 << 62)   # value of a trace position the RTL never reported
PHASES = ("encode", "forward", "desire", "update")


# ---------------------------------------------------------------- weights
def lane_words(matrix, lanes: int) -> np.ndarray:
    """The P-lane words of a (R, C) matrix, block-major (word b*C + i holds rows b*P .. b*P + P-1 of
    column i, zero rows past R), as a (words, P) int64 array: the weight memories' layout (both cores)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    rows, cols = matrix.shape
    padded = np.zeros((-(-rows // lanes) * lanes, cols), dtype=np.int64)
    padded[:rows] = matrix
    return padded.reshape(-1, lanes, cols).transpose(0, 2, 1).reshape(-1, lanes)


def lane_matrix(words, lanes: int, cols: int) -> np.ndarray:
    """Inverse of ``lane_words``: the (blocks*P, C) matrix of (blocks*C, P) words."""
    return np.asarray(words, dtype=np.int64).reshape(-1, cols, lanes).transpose(0, 2, 1).reshape(-1, cols)


def pack_weights(params: CoreParams, layer: int, w: np.ndarray) -> list[int]:
    """Words of weight layer ``layer`` (1-based) from W_l (N_l, N_{l-1}), for the weight port."""
    P, WB = params.P, params.cfg.weight_bits
    shape = (params.sizes[layer], params.sizes[layer - 1])
    if np.shape(w) != shape:
        raise ValueError(f"W_{layer} has shape {np.shape(w)}, the core's layer {layer} is {shape}")
    mask = (1 << WB) - 1
    words = []
    for row in lane_words(w, P):
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
    return lane_matrix(lanes, P, n_in)[:n_out]


# ---------------------------------------------------------------- layouts
def unpack_layout(layout, word: int):
    """Integer ``word`` laid out as the Amaranth ``layout`` -> nested dict/list of Python ints
    (signed fields sign-extended). Offsets and widths come from the layout itself, never restated."""
    if isinstance(layout, data.StructLayout):
        return {name: unpack_layout(fld.shape, (word >> fld.offset) & ((1 << fld.width) - 1))
                for name, fld in layout}
    if isinstance(layout, data.ArrayLayout):
        width = Shape.cast(layout.elem_shape).width
        return [unpack_layout(layout.elem_shape, (word >> (k * width)) & ((1 << width) - 1))
                for k in range(layout.length)]
    shape = Shape.cast(layout)
    word &= (1 << shape.width) - 1
    return word - (1 << shape.width) if shape.signed and word >> (shape.width - 1) else word


def pack_layout(layout, values) -> int:
    """Inverse of ``unpack_layout`` for the fields given (missing struct fields are 0)."""
    if isinstance(layout, data.StructLayout):
        word = 0
        for name, value in values.items():
            fld = layout[name]
            word |= pack_layout(fld.shape, value) << fld.offset
        return word
    if isinstance(layout, data.ArrayLayout):
        width = Shape.cast(layout.elem_shape).width
        return sum(pack_layout(layout.elem_shape, v) << (k * width) for k, v in enumerate(values))
    return int(values) & ((1 << Shape.cast(layout).width) - 1)


# ---------------------------------------------------------------- debug trace
#: DebugKind value -> its name
KIND_NAMES = {value: name for name, value in vars(DebugKind).items() if name.isupper()}
#: report kinds of the values the checker compares, in report order
VALUE_KINDS = ("masks", "spikes", "membranes", "traces", "desires", "counts", "predictions", "weights")


def value_kind(key: str) -> str:
    """Report kind of a trace key ("forward/1/v" -> "membranes")."""
    phase, _, name = key.split("/")
    if phase == "desire":
        return "desires"
    return {"mask": "masks", "spikes": "spikes", "v": "membranes", "trace": "traces", "counts": "counts",
            "weights": "weights"}[name]


class DebugDecoder:
    """Turns the RTL's debug records of one sample into a Trace keyed like the golden model's.

    Every record must land on positions nobody reported before: a record of an unknown kind, for a
    layer, time step or neuron outside the network, or repeating a position already reported is a
    protocol error (``errors``), never dropped. Lanes past the last neuron of a layer's final block
    are the block's padding (P lanes per record) and are the only values ignored.
    Positions never reported keep ``MISSING`` and show up as a divergence.
    """

    def __init__(self, params: CoreParams, train: bool):
        self.p, self.train = params, train
        N, T = params.sizes, params.cfg.time_steps
        self.trace = Trace()
        self.reported = {}             # key -> bool array: position already reported
        self.errors = []               # protocol errors, in arrival order
        self.records = {}              # records received per DebugKind name
        self.words = []                # the raw records, in arrival order

        def expect(key, shape):
            self.trace[key] = np.full(shape, MISSING, dtype=np.int64)
            self.reported[key] = np.zeros(shape, dtype=bool)

        def fixed(key, size):          # not maskable: all kept, nothing to report
            self.trace[key] = np.ones(size, dtype=np.int64)

        if train:
            expect("encode/0/mask", N[0]) if params.maskable(0) else fixed("encode/0/mask", N[0])
        expect("encode/0/spikes", (T, N[0]))
        for l in range(1, params.L + 1):
            if train:
                expect(f"forward/{l}/mask", N[l]) if params.maskable(l) else fixed(f"forward/{l}/mask", N[l])
            expect(f"forward/{l}/trace", (T, N[l - 1]))
            expect(f"forward/{l}/v", (T, N[l]))
            expect(f"forward/{l}/spikes", (T, N[l]))
            expect(f"forward/{l}/counts", N[l])
        if train:
            for l in range(params.L, 0, -1):
                if l < params.L:
                    expect(f"desire/{l}/sum", N[l])
                expect(f"desire/{l}/care", N[l])
                expect(f"desire/{l}/want", N[l])

    def _error(self, text):
        self.errors.append(f"record {sum(self.records.values())}: {text}")

    def _put(self, key, t, n0, values, lanes_aligned=True):
        """Store ``values`` at neurons n0, n0+1, ... (step ``t`` for per-step keys)."""
        arr, seen = self.trace.get(key), self.reported.get(key)
        if seen is None:
            self._error(f"{key} is not reported in this mode ({'training' if self.train else 'inference'})")
            return
        size = arr.shape[-1]
        if n0 >= size or (lanes_aligned and n0 % self.p.P):
            self._error(f"{key}: neuron {n0} is not the start of a block of {size} neurons")
            return
        if arr.ndim == 2 and t >= arr.shape[0]:
            self._error(f"{key}: time step {t} outside 0..{arr.shape[0] - 1}")
            return
        for q, val in enumerate(values[:size - n0]):     # lanes past the layer's end: block padding
            where = (t, n0 + q) if arr.ndim == 2 else (n0 + q,)
            if seen[where]:
                self._error(f"{key}: duplicate report of {'step %d, ' % t if arr.ndim == 2 else ''}neuron {n0 + q}")
                return
            seen[where] = True
            arr[where] = val

    def add_word(self, word: int):
        """One raw debug payload (laid out as ``CoreParams.debug_layout``)."""
        self.words.append(word)
        rec = unpack_layout(self.p.debug_layout, word)
        self.add(rec["kind"], rec["layer"], rec["t"], rec["n"], rec["value"], rec["aux"])

    def add(self, kind, layer, t, n, values, aux):
        P, T, L = self.p.P, self.p.cfg.time_steps, self.p.L
        name = KIND_NAMES.get(kind)
        self.records[name or f"unknown {kind}"] = self.records.get(name or f"unknown {kind}", 0) + 1
        if name is None:
            self._error(f"unknown record kind {kind}")
            return
        if not (0 <= layer <= L) or (layer == 0 and kind != DebugKind.MASK):
            self._error(f"{name} record for layer {layer}, the network has layers 1..{L}")
            return
        per_step = kind in (DebugKind.SCAN, DebugKind.NEURON)
        if per_step and t >= T or not per_step and t != 0:
            self._error(f"{name} record at time step {t}" + (f", window is 0..{T - 1}" if per_step else ""))
            return
        if kind == DebugKind.MASK:
            self._put("encode/0/mask" if layer == 0 else f"forward/{layer}/mask", 0, n, aux[:P])
        elif kind == DebugKind.SCAN:
            self._put(f"forward/{layer}/trace", t, n, values[:P])
            if layer == 1:
                self._put("encode/0/spikes", t, n, [a & 1 for a in aux[:P]])
        elif kind == DebugKind.NEURON:
            self._put(f"forward/{layer}/v", t, n, values[:P])
            self._put(f"forward/{layer}/spikes", t, n, [a & 1 for a in aux[:P]])
            if t == T - 1:
                self._put(f"forward/{layer}/counts", 0, n, [a >> 1 for a in aux[:P]])
        elif kind == DebugKind.DESIRE_OUT:
            if layer != L:
                self._error(f"DESIRE_OUT record for layer {layer}, the output layer is {L}")
                return
            self._put(f"desire/{L}/care", 0, n, [a & 1 for a in aux[:P]])
            self._put(f"desire/{L}/want", 0, n, [(a >> 1) & 1 for a in aux[:P]])
        elif kind == DebugKind.DESIRE_HID:
            self._put(f"desire/{layer}/sum", 0, n, values[:1], lanes_aligned=False)
            self._put(f"desire/{layer}/care", 0, n, [aux[0] & 1], lanes_aligned=False)
            self._put(f"desire/{layer}/want", 0, n, [(aux[0] >> 1) & 1], lanes_aligned=False)


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
            # Inference uses no trace, but the core runs its trace lanes anyway: they must still
            # follow the golden recurrence over the layer's inputs.
            trace.record("forward", l, "trace", golden._trace(cfg, golden._layer_input(cfg, fwd.spikes, l)))
            trace.record("forward", l, "v", fwd.v[l])
            trace.record("forward", l, "spikes", fwd.spikes[l])
            trace.record("forward", l, "counts", fwd.counts[l])
        new, counts = [np.array(w, dtype=np.int64, copy=True) for w in weights], fwd.counts[cfg.layers]
    for l in range(1, cfg.layers + 1):
        trace.record("update", l, "weights", new[l - 1])
    return Expected(trace, new, np.asarray(counts, dtype=np.int64), int(golden.classify(counts)))


# ---------------------------------------------------------------- checking
def reads_back_weights(train: bool, last: bool) -> bool:
    """Whether the testbenches read every weight word back after a sample: after every training
    sample (the weights it changed) and after the last sample of a run."""
    return train or last


@dataclass
class SampleResult:
    """What the RTL reported for one sample."""
    counts: np.ndarray
    pred: int          # -1 when the RTL flagged a tie
    cycles: int
    weights: list | None = None          # read back after the sample (None: not read)
    debug: DebugDecoder | None = None    # the sample's decoded debug records (None: tap off)


@dataclass
class Report:
    """Outcome of a bit-exact run: values expected and compared per kind, cycles, first divergence.

    ``expected[kind]`` counts the golden values this mode compares (every spike, membrane, trace,
    mask and desire only with the debug tap; counts and predictions every sample; every weight word
    after every training sample and after the last sample), ``compared[kind]`` those found equal.
    A run is ok only if every sample of the job was compared and every expected value was compared.
    """
    config: str = ""
    simulator: str = ""
    debug_tap: bool = False
    samples_in_job: int = 0
    samples: int = 0
    train_samples: int = 0
    expected: dict = field(default_factory=lambda: dict.fromkeys(VALUE_KINDS, 0))
    compared: dict = field(default_factory=lambda: dict.fromkeys(VALUE_KINDS, 0))
    records: dict = field(default_factory=dict)    # debug records received, per record kind
    correct: int = 0
    cycles_train: list = field(default_factory=list)
    cycles_infer: list = field(default_factory=list)
    mismatch: str | None = None
    sim_cycles: int = 0
    sim_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.mismatch is None and self.samples > 0 and self.samples == self.samples_in_job
                and self.compared == self.expected)

    # the compared counts by kind, as attributes
    spikes = property(lambda self: self.compared["spikes"])
    membranes = property(lambda self: self.compared["membranes"])
    traces = property(lambda self: self.compared["traces"])
    desires = property(lambda self: self.compared["desires"])
    counts = property(lambda self: self.compared["counts"])
    predictions = property(lambda self: self.compared["predictions"])
    weights = property(lambda self: self.compared["weights"])

    def to_dict(self) -> dict:
        """The report as plain JSON-ready fields (``Report(**d)`` rebuilds it)."""
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"bit-exact check {self.config} on {self.simulator}: "
                 + ("ALL MATCHED" if self.ok else "MISMATCH"),
                 f"  samples compared: {self.samples} of {self.samples_in_job} ({self.train_samples} training, "
                 f"{self.samples - self.train_samples} inference)",
                 f"  debug tap {'on: every intermediate value compared' if self.debug_tap else 'off: spikes, membranes, traces, masks and desires not compared'}",
                 "  values (expected / compared): " + ", ".join(
                     f"{kind} {self.expected[kind]}/{self.compared[kind]}" for kind in VALUE_KINDS
                     if self.debug_tap or kind in ("counts", "predictions", "weights"))]
        if self.records:
            lines.append("  debug records: " + ", ".join(f"{k} {v}" for k, v in sorted(self.records.items())))
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
        elif not self.ok:
            short = [k for k in VALUE_KINDS if self.compared[k] != self.expected[k]]
            lines.append(f"  incomplete: {self.samples} of {self.samples_in_job} samples"
                         + (f"; not every expected value compared ({', '.join(short)})" if short else ""))
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
    """Compares RTL sample results with the golden model, sample after sample (weights chain).

    Accounts for everything: a debug-tap protocol error, a golden value without its RTL record (or
    the reverse), a count, prediction or weight word that differs is a mismatch, and the report
    counts what was expected and compared per kind.
    """

    def __init__(self, cfg: DesireConfig, weights, report: Report, debug_tap: bool, samples_in_job: int):
        self.cfg = cfg
        self.weights = [np.array(w, dtype=np.int64, copy=True) for w in weights]
        self.report = report
        report.debug_tap, report.samples_in_job = debug_tap, samples_in_job
        self.index = 0

    def expect(self, sample: Sample) -> Expected:
        return reference_sample(self.cfg, self.weights, sample)

    def _fail(self, text: str) -> bool:
        self.report.mismatch = text
        return False

    def _check_trace(self, idx: int, expected: Expected, got: SampleResult) -> bool:
        r, decoder = self.report, got.debug
        for kind, n in decoder.records.items():
            r.records[kind] = r.records.get(kind, 0) + n
        if decoder.errors:
            more = f" (and {len(decoder.errors) - 1} more)" if len(decoder.errors) > 1 else ""
            return self._fail(f"debug tap protocol error at sample {idx}: {decoder.errors[0]}{more}")
        golden_keys = [k for k in expected.trace if not k.startswith("update/")]
        unmatched = [k for k in golden_keys if k not in decoder.trace]
        unmatched += [k for k in decoder.trace if k not in expected.trace]
        if unmatched:
            return self._fail(f"sample {idx}: golden trace and RTL debug records disagree on what exists: "
                              f"{', '.join(unmatched)}")
        got_trace = Trace(decoder.trace)
        if got.weights is not None:
            for l, w in enumerate(got.weights, start=1):
                got_trace[f"update/{l}/weights"] = np.asarray(w, dtype=np.int64)
        d = earliest_divergence(expected.trace, got_trace)
        if d is not None:
            return self._fail(describe(d, idx))
        for key in golden_keys:
            r.compared[value_kind(key)] += int(np.asarray(expected.trace[key]).size)
        return True

    def check(self, sample: Sample, expected: Expected, got: SampleResult, last: bool) -> bool:
        """Record one sample; returns False (and fills ``report.mismatch``) on the first difference."""
        r, idx = self.report, self.index
        self.index += 1
        r.samples += 1
        r.train_samples += int(sample.train)
        (r.cycles_train if sample.train else r.cycles_infer).append(int(got.cycles))
        if r.debug_tap:
            for key, arr in expected.trace.items():
                if not key.startswith("update/"):
                    r.expected[value_kind(key)] += int(np.asarray(arr).size)
        r.expected["counts"] += int(expected.counts.size)
        r.expected["predictions"] += 1
        if reads_back_weights(sample.train, last):
            r.expected["weights"] += sum(int(w.size) for w in expected.weights)
            if got.weights is None:
                return self._fail(f"sample {idx}: the testbench did not read the weights back")
        if r.debug_tap:
            if got.debug is None:
                return self._fail(f"sample {idx}: no debug records although the tap is on")
            if not self._check_trace(idx, expected, got):
                return False
        if not np.array_equal(expected.counts, np.asarray(got.counts)):
            j = int(np.flatnonzero(expected.counts != np.asarray(got.counts))[0])
            return self._fail(f"first divergence at sample {idx}, phase forward, layer {self.cfg.layers}, counts, "
                              f"neuron {j}: expected {expected.counts[j]}, got {got.counts[j]}")
        r.compared["counts"] += int(expected.counts.size)
        if expected.pred != got.pred:
            return self._fail(f"first divergence at sample {idx}, phase forward, layer {self.cfg.layers}, "
                              f"prediction: expected {expected.pred}, got {got.pred}")
        r.compared["predictions"] += 1
        r.correct += int(expected.pred == sample.label)
        if got.weights is not None:
            for l, (w_exp, w_got) in enumerate(zip(expected.weights, got.weights), start=1):
                if not np.array_equal(w_exp, w_got):
                    jj, ii = (int(x) for x in np.argwhere(w_exp != w_got)[0])
                    return self._fail(f"first divergence at sample {idx}, phase update, layer {l}, weights, "
                                      f"post neuron {jj}, input {ii}: expected {w_exp[jj, ii]}, got {w_got[jj, ii]}")
                r.compared["weights"] += int(w_exp.size)
        self.weights = expected.weights
        return True
