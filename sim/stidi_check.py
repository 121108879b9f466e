"""Bit-exact check of the STiDi-BP core (rtl/stidi_core.py): the checker of both testbenches, and
the Amaranth-simulator driver. The cocotb testbench (sim/cocotb_tb.py, ``StidiBench``; run by
``sim.runner.run_stidi_bitexact`` under Icarus or Verilator) uses the same label and result beats
(``label_beat``, ``SampleResult.from_word``), decoder, cycle limit and checker (``start_check``).

``rtl_run`` drives ``StidiCore`` as sim/amaranth_tb.py drives the desire core: it loads the latent
weights through ``wport``, streams labelled samples (label beat first, then the pixels), takes the
result beats, reads every weight word back after every training sample (and after the last sample)
and, with the debug tap on, decodes the records into a ``Trace`` keyed like the golden model's
(docs/golden-spec-stidi.md §13). Every wait is bounded by ``sample_cycle_limit`` cycles and a timeout
names what the testbench waited for.

``check_stidi`` runs the golden integer learner (``golden.stidi``: ``FixedStidiLearner``,
``stidi_fixed.train_step`` / ``forward`` / ``decide``) on the same samples and compares, sample after
sample: the prediction and the output spike times of the result beat, every latent weight, and with
the tap every intermediate of the golden trace (input times, I and U of every layer and step, spike
times, decision and §8 case, targets and ternary error, displacements, error signs and levels). The
first difference is reported in execution order: sample, phase, layer, step, neuron, expected, got.
"""

import copy
from dataclasses import dataclass, field

import numpy as np

from ..golden import stidi_fixed
from ..golden.stidi import FixedStidiLearner
from ..golden.trace import Trace, first_divergence
from ..rtl.stidi_core import StidiCore, StidiCoreParams, StidiDebugKind
from .amaranth_tb import SimulationTimeout, check_run, simulate_core
from .model import Report, Sample, lane_matrix, lane_words, pack_layout, reads_back_weights, unpack_layout

__all__ = ["Sample", "SampleResult", "StidiReport", "StidiChecker", "SimulationTimeout", "golden_learner",
           "initial_weights", "sample_cycle_limit", "label_beat", "rtl_run", "start_check", "check_stidi",
           "StidiDebugDecoder", "KIND_NAMES", "VALUE_KINDS"]

MISSING = -(1 << 62)   # a trace position the RTL never reported

#: Kinds of compared values, in report order: the debug tap's (first eight), then the result
#: beat's and the weight read-back's.
VALUE_KINDS = ("input times", "currents", "membranes", "spike times", "pool argmins", "decisions", "targets",
               "displacements", "error levels", "predictions", "output times", "weight changes", "weights")
DEBUG_KINDS = VALUE_KINDS[:9]
#: StidiDebugKind value -> its name
KIND_NAMES = {value: name for name, value in vars(StidiDebugKind).items() if name.isupper()}


def value_kind(key: str) -> str:
    """Report kind of a golden trace key ("forward/1/U" -> "membranes")."""
    phase, _, name = key.split("/")
    if phase == "encode":
        return "input times"
    if phase == "forward":
        return {"I": "currents", "U": "membranes", "times": "spike times", "argmin": "pool argmins"}[name]
    if phase == "decision":
        return "decisions"
    if phase == "target":
        return "targets"
    if phase == "error":
        return "displacements" if name == "D" else "error levels"
    raise KeyError(key)


# ------------------------------------------------------------------------------------------------
# The golden side
# ------------------------------------------------------------------------------------------------

def to_host(params: StidiCoreParams, canonical) -> list:
    """Weights per layer as the host's weight port moves them, (s_l, s_{l-1}) (``params.sizes``), from
    the canonical (N_out, fan_in) matrices: the same for a fully connected topology; for a conv one
    the words of the core's weight memory (``StidiCoreParams.w_depth``: P output neurons or channels
    of one synapse a word, block-major), padded with zero words, as the host matrix that packs into
    those words."""
    if not params.is_conv:
        return [np.asarray(w, dtype=np.int64) for w in canonical]
    P, out = params.P, []
    for l, w in enumerate(canonical, start=1):
        words = lane_words(w, P)
        cols = params.sizes[l - 1]
        padded = np.zeros((params.blocks(l) * cols, P), dtype=np.int64)
        padded[:len(words)] = words
        out.append(lane_matrix(padded, P, cols)[:params.sizes[l]])
    return out


def from_host(params: StidiCoreParams, host) -> list:
    """Inverse of ``to_host``: the canonical (N_out, fan_in) matrix of every weight layer."""
    if len(host) != params.L:
        raise ValueError(f"{params.topology} has {params.L} weight layers, got {len(host)} weight arrays")
    P, out = params.P, []
    for l, (s, w) in enumerate(zip(params.weight_stages, host), start=1):
        w = np.asarray(w, dtype=np.int64)
        if w.shape != (params.sizes[l], params.sizes[l - 1]):
            raise ValueError(f"weights of layer {l} have shape {w.shape}, {params.topology} needs "
                             f"{(params.sizes[l], params.sizes[l - 1])}")
        if not params.is_conv:
            out.append(w)
            continue
        rows, fan_in = params.stages[s].weight_shape[0], params.fan_in(s)
        words = lane_words(w, P)[:params.weight_words(s)]
        out.append(lane_matrix(words, P, fan_in)[:rows])
    return out


def golden_learner(params: StidiCoreParams, weights=None) -> FixedStidiLearner:
    """The golden integer learner of ``params.cfg`` with ``weights`` (per layer, host matrices,
    ``to_host``; None: the golden xorshift init)."""
    if weights is None:
        return FixedStidiLearner(params.cfg)
    arrays = {f"w{s}": w.reshape(params.stages[s].weight_shape)
              for s, w in zip(params.weight_stages, from_host(params, weights))}
    return FixedStidiLearner(params.cfg, weights=arrays)


def canonical_weights(learner) -> list:
    """The learner's latent weights per layer as (N_out, fan_in) matrices."""
    return [learner.w[l].T.copy() for l in learner.layers]


def initial_weights(params: StidiCoreParams) -> list:
    """The golden initial latent weights (xorshift32 from ``cfg.seed``, §10.2) per layer, as host matrices."""
    return to_host(params, canonical_weights(golden_learner(params)))


def learner_weights(learner, params: StidiCoreParams | None = None) -> list:
    """A golden learner's latent weights as the host matrices of its core (``to_host``)."""
    if not learner.topo.is_conv:
        return canonical_weights(learner)
    return to_host(params or StidiCoreParams(learner.cfg), canonical_weights(learner))


def label_shifts(learner, epoch: int) -> list:
    """LR_SHIFT of every weight layer in ``epoch``: what the host puts on the label beat (clamped to
    the field's 255: any R past the step's width already gives a zero step)."""
    learner.set_epoch(epoch)
    return [min(learner.step_shift(l), 255) for l in learner.layers]


def label_beat(params: StidiCoreParams, host, sample: Sample) -> int:
    """The label beat of ``sample`` as one word of ``params.label_layout`` (both testbenches drive it);
    ``host`` is a golden learner of ``params`` (the LR_SHIFT of the sample's epoch)."""
    return pack_layout(params.label_layout, {"label": int(sample.label), "train": int(sample.train),
                                             "step": int(sample.step), "lr_shift": label_shifts(host, sample.epoch)})


@dataclass
class Expected:
    trace: Trace
    pred: int
    times: np.ndarray              # output spike times
    weights: list                  # latent weights after the sample, canonical (N_out, fan_in) per layer


def expected_sample(learner, sample: Sample, lanes: int | None = None) -> Expected:
    """The golden outcome of one sample; a training sample updates ``learner`` in place.

    ``sample.pixels`` are the N0 values the core receives, so the encoding is the ROM lookup that
    ``learner.encode`` does after its reshaping (§4). An inference sample exits early (§7): the
    output layer's I and U are expected for the steps ``early_exit_steps`` of blocks of ``lanes``
    neurons computes (``MISSING`` at the others: not reported), its times where they are seen, and
    the result times are the earliest spike(s).
    """
    t0 = learner.table[np.asarray(sample.pixels, dtype=np.int64)].reshape(learner.topo.input_shape)
    top = learner.layers[-1]
    trace = Trace()
    if sample.train:
        learner.set_epoch(sample.epoch)
        pred = stidi_fixed.train_step(learner, t0, int(sample.label), int(sample.step), trace)
        times = trace[f"forward/{top}/times"]
    else:
        if lanes is None:
            raise ValueError("an inference sample exits early in blocks of the core's lanes: pass lanes")
        T = learner.T
        trace.record("encode", 0, "times", t0)
        all_times, _, membrane = stidi_fixed.forward(learner, t0, trace)
        last = stidi_fixed.early_exit_steps(all_times[top], T, lanes)
        computed = np.arange(T)[:, None] <= last[None, :]
        for name in ("I", "U"):
            trace[f"forward/{top}/{name}"] = np.where(computed, trace[f"forward/{top}/{name}"], MISSING)
        seen = np.where(all_times[top] <= last, all_times[top], T)
        trace[f"forward/{top}/times"] = seen
        pred = stidi_fixed.decide(seen, np.where(computed, membrane, MISSING), T)
        trace.record("decision", top, "pred", pred)
        times = stidi_fixed.early_exit_times(seen, T)
    return Expected(trace, int(pred), np.asarray(times, dtype=np.int64), canonical_weights(learner))


# ------------------------------------------------------------------------------------------------
# Debug records -> trace
# ------------------------------------------------------------------------------------------------

class StidiDebugDecoder:
    """The core's debug records of one sample as a ``Trace`` with the golden keys.

    A record of an unknown kind, for a layer, step or neuron outside the network, or repeating a
    position already reported is a protocol error (``errors``), never dropped. Lanes past a layer's
    last neuron are block padding, the only values ignored. Positions never reported keep
    ``MISSING`` and show up as a divergence.
    """

    def __init__(self, params: StidiCoreParams, train: bool):
        self.p, self.train = params, train
        self.trace = Trace()
        self.seen = {}
        self.errors = []
        self.records = {}

    def _error(self, text):
        self.errors.append(f"record {sum(self.records.values())}: {text}")

    def _array(self, key, shape):
        if key not in self.trace:
            self.trace[key] = np.full(shape, MISSING, dtype=np.int64)
            self.seen[key] = np.zeros(shape, dtype=bool)
        return self.trace[key], self.seen[key]

    def _put(self, key, shape, n0, values, t=None):
        arr, seen = self._array(key, shape)
        size = shape[-1] if shape else 1
        if shape and self.p.slot_neuron(self._layer(key), n0) >= size:
            self._error(f"{key}: neuron {n0} outside 0..{size - 1}")
            return
        if t is not None and t >= shape[0]:
            self._error(f"{key}: time step {t} outside 0..{shape[0] - 1}")
            return
        if not shape:
            values = values[:1]
        for q, value in enumerate(values):
            neuron = self.p.slot_neuron(self._layer(key), n0 + q) if shape else 0
            if shape and neuron >= size:
                continue                     # block padding (lanes past the last neuron or channel)
            where = () if not shape else (neuron,) if t is None else (t, neuron)
            if seen[where]:
                step = f"step {t}, " if t is not None else ""
                self._error(f"{key}: duplicate report of {step}neuron {neuron}")
                return
            seen[where] = True
            arr[where] = value

    @staticmethod
    def _layer(key):
        return int(key.split("/")[1])

    def add_word(self, word: int):
        rec = unpack_layout(self.p.debug_layout, word)
        self.add(rec["kind"], rec["layer"], rec["t"], rec["n"], rec["value"], rec["aux"])

    def add(self, kind, layer, t, n, value, aux):
        p, K = self.p, StidiDebugKind
        N, T, top = p.stage_sizes, p.T, p.top
        name = KIND_NAMES.get(kind, f"unknown {kind}")
        self.records[name] = self.records.get(name, 0) + 1
        if kind not in KIND_NAMES:
            self._error(f"unknown record kind {kind}")
            return
        pools = tuple(s for s in range(1, top + 1) if p.kind(s) == "pool")
        expected_stages = {K.ENCODE: (0,), K.STEP: p.weight_stages, K.TIMES: p.weight_stages, K.POOL: pools,
                           K.DECISION: (top,), K.TARGET: (top,), K.DISP: tuple(sorted(p.quantised_stages + pools)),
                           K.LEVEL: p.quantised_stages}[kind]
        if layer not in expected_stages:
            self._error(f"{name} record for layer {layer}, expected one of {', '.join(map(str, expected_stages))}")
            return
        if kind != K.STEP and t != 0:
            self._error(f"{name} record at time step {t}")
            return
        training_only = kind in (K.TARGET, K.DISP, K.LEVEL)
        if training_only and not self.train:
            self._error(f"{name} record in an inference sample")
            return
        if kind == K.ENCODE:
            self._put("encode/0/times", (N[0],), n, value[:1])
        elif kind == K.STEP:
            self._put(f"forward/{layer}/I", (T, N[layer]), n, aux, t)
            self._put(f"forward/{layer}/U", (T, N[layer]), n, value, t)
        elif kind == K.TIMES:
            self._put(f"forward/{layer}/times", (N[layer],), n, value)
        elif kind == K.POOL:
            self._put(f"forward/{layer}/times", (N[layer],), n, value[:1])
            self._put(f"forward/{layer}/argmin", (N[layer],), n, aux[:1])
        elif kind == K.DECISION:
            self._put(f"decision/{layer}/pred", (), 0, value[:1])
            if self.train:
                self._put(f"target/{layer}/case", (), 0, aux[:1])
        elif kind == K.TARGET:
            self._put(f"target/{layer}/target", (N[layer],), n, value)
            self._put(f"target/{layer}/d", (N[layer],), n, aux)
        elif kind == K.DISP:       # a pooling stage's: one window (StidiUnpool) a record
            self._put(f"error/{layer}/D", (N[layer],), n, value[:1] if p.kind(layer) == "pool" else value)
        elif kind == K.LEVEL:
            self._put(f"error/{layer}/sign", (N[layer],), n, value)
            self._put(f"error/{layer}/lvl", (N[layer],), n, aux)

    def shaped(self) -> Trace:
        """The decoded trace with the golden model's array shapes (a map stage's neurons as (C, H, W),
        the per-step arrays as (T, C, H, W)); records arrive with slots (``StidiCoreParams.slot_neuron``)."""
        out = Trace()
        for key, arr in self.trace.items():
            _, layer, name = key.split("/")
            shape = self.p.stages[int(layer)].shape
            if name in ("I", "U"):
                out[key] = arr.reshape((arr.shape[0],) + shape)
            elif arr.ndim == 1:
                out[key] = arr.reshape(shape)
            else:
                out[key] = arr
        return out


# ------------------------------------------------------------------------------------------------
# The RTL side
# ------------------------------------------------------------------------------------------------

def sample_cycle_limit(params: StidiCoreParams) -> int:
    """Cycles within which the core finishes any one sample, whatever its spikes and errors: every
    phase's worst case (every pre spiking, every pre eligible, every stage updated), times 2, plus
    pipeline fill. Waiting longer than this is a hang, not a slow sample."""
    p = params
    N, T, top = p.stage_sizes, p.T, p.top
    cycles = 0
    for s in range(1, top + 1):
        kind, n_in, blocks = p.kind(s), N[s - 1], p.stage_blocks(s)
        if kind == "fc":
            cycles += T + n_in + 4 + blocks * (T + n_in + 2)                           # forward
            cycles += p.stage_blocks(s - 1) + 8 + n_in * (2 + blocks) + 16               # backward
        elif kind == "conv":
            positions = N[s] // p.stages[s].shape[0]
            cycles += N[s] * (p.fan_in(s) + T + 3) + 4                                   # forward
            cycles += n_in + 8 + p.weight_count(s) * (2 * positions + 24)                 # backward
        else:
            cycles += N[s - 1] + 8                                                       # pooling
            cycles += N[s - 1] + 8                                                       # unpooling
        cycles += 3 * (p.stage_blocks(s) + 2)                                             # quantisation
    cycles += 2 * (N[-1] + 2) + p.stage_blocks(top) + 8 + 8                              # decision, targets, key
    return 2 * cycles + 200


@dataclass
class SampleResult:
    pred: int
    times: np.ndarray
    cycles: int
    weights: list | None = None
    debug: StidiDebugDecoder | None = None

    @classmethod
    def from_word(cls, params: StidiCoreParams, word: int) -> "SampleResult":
        """The result beat, one word of ``params.result_layout`` (both testbenches read it)."""
        fields = unpack_layout(params.result_layout, word)
        return cls(fields["pred"], np.array(fields["times"], dtype=np.int64), fields["cycles"])


def rtl_run(params: StidiCoreParams, weights, samples, *, vcd=None, probe=None):
    """Simulate ``samples`` on a fresh ``StidiCore(params)`` loaded with ``weights`` (per layer,
    (N_l, N_{l-1})), through the testbench both cores share (``amaranth_tb.simulate_core``).
    Returns (results, total cycles, debug records outside any sample).
    ``probe(dut)`` -> an async process added to the simulation (for debugging)."""
    host = golden_learner(params, weights)        # the host side: LR_SHIFT of each sample's epoch
    return simulate_core(StidiCore(params), params, weights, samples,
                         label_word=lambda sample: label_beat(params, host, sample),
                         result_of=lambda word: SampleResult.from_word(params, word),
                         new_decoder=lambda train: StidiDebugDecoder(params, train),
                         limit=sample_cycle_limit(params), vcd=vcd, probe=probe)


# ------------------------------------------------------------------------------------------------
# The comparison
# ------------------------------------------------------------------------------------------------

@dataclass
class StidiReport(Report):
    """Outcome of a bit-exact run: values expected and compared per kind (``VALUE_KINDS``), cycles,
    first divergence; the fields and ``ok`` of the desire core's ``Report`` (``ok`` only if every sample
    was compared and every expected value was compared and equal), plus what the golden run exercised
    (so a test can show its samples reach every branch)."""
    simulator: str = "amaranth"
    expected: dict = field(default_factory=lambda: dict.fromkeys(VALUE_KINDS, 0))
    compared: dict = field(default_factory=lambda: dict.fromkeys(VALUE_KINDS, 0))
    updating_samples: int = 0
    cases: dict = field(default_factory=dict)          # §8 target case -> training samples
    hidden_changes: int = 0                            # weights of layers below the output changed
    dropped_fired: int = 0                             # fired pres the dropout excluded from an update

    @classmethod
    def from_dict(cls, fields: dict) -> "StidiReport":
        """The report ``to_dict`` gave, after a JSON round trip (whose object keys are text)."""
        report = cls(**fields)
        report.cases = {int(case): n for case, n in report.cases.items()}
        return report

    def __str__(self) -> str:
        kinds = VALUE_KINDS if self.debug_tap else VALUE_KINDS[len(DEBUG_KINDS):]
        lines = [f"STiDi-BP bit-exact check {self.config} on {self.simulator}: "
                 + ("ALL MATCHED" if self.ok else "MISMATCH"),
                 f"  samples compared: {self.samples} of {self.samples_in_job} ({self.train_samples} training, "
                 f"{self.updating_samples} of them updating; {self.samples - self.train_samples} inference)",
                 f"  debug tap {'on' if self.debug_tap else 'off: only predictions, output times and weights'}",
                 "  values (expected / compared): " + ", ".join(
                     f"{k} {self.expected[k]}/{self.compared[k]}" for k in kinds)]
        if self.cases:
            lines.append("  golden run: target cases " + ", ".join(f"{k}: {v}" for k, v in sorted(self.cases.items()))
                         + f"; {self.hidden_changes} hidden weight changes; {self.dropped_fired} fired pres dropped")
        if self.records:
            lines.append("  debug records: " + ", ".join(f"{k} {v}" for k, v in sorted(self.records.items())))
        for name, cycles in (("training", self.cycles_train), ("inference", self.cycles_infer)):
            if cycles:
                lines.append(f"  cycles per {name} sample: mean {np.mean(cycles):.0f} "
                             f"(min {min(cycles)}, max {max(cycles)})")
        if self.sim_seconds:
            lines.append(f"  simulation: {self.sim_cycles} cycles in {self.sim_seconds:.1f} s")
        if self.mismatch:
            lines.append("  " + self.mismatch)
        return "\n".join(lines)


def describe(d, sample_index: int) -> str:
    """'first divergence at sample s, phase p, layer l, name, [time step t,] neuron n: expected x, got y'."""
    parts = [f"first divergence at sample {sample_index}", f"phase {d.phase}", f"layer {d.layer}", d.name]

    def neuron(index):      # (n,) flat, or (c, y, x) in a map
        return str(index[0]) if len(index) == 1 else "(c, y, x) = (" + ", ".join(map(str, index)) + ")"

    if d.name == "w" and len(d.index) == 2:
        parts.append(f"post neuron {d.index[0]}, input {d.index[1]}")
    elif d.name == "w" and len(d.index) == 4:
        parts.append(f"output channel {d.index[0]}, input channel {d.index[1]}, tap (ky, kx) = "
                     f"({d.index[2]}, {d.index[3]})")
    elif d.name in ("I", "U") and len(d.index) >= 2:
        parts += [f"time step {d.index[0]}", f"neuron {neuron(d.index[1:])}"]
    elif d.index:
        parts.append(f"{'input' if d.phase == 'encode' else 'neuron'} {neuron(d.index)}")
    got = "never reported" if d.got == MISSING else d.got
    expected = "not computed (early exit)" if d.expected == MISSING else d.expected
    parts.append(f"expected {expected}, got {got}")
    return ", ".join(parts)


class StidiChecker:
    """Compares the RTL's sample results with the golden learner, sample after sample."""

    def __init__(self, params: StidiCoreParams, learner, report: StidiReport):
        self.params, self.learner, self.report = params, learner, report
        self.index = 0

    def _fail(self, text):
        self.report.mismatch = text
        return False

    def _coverage(self, sample, expected):
        r, trace, learner = self.report, expected.trace, self.learner
        top = learner.layers[-1]
        if f"target/{top}/case" in trace:
            case = int(trace[f"target/{top}/case"])
            r.cases[case] = r.cases.get(case, 0) + 1
        r.updating_samples += int(f"update/{top}/w" in trace)
        for below, above in zip(learner.layers, learner.layers[1:]):
            if f"update/{above}/w" not in trace:
                continue
            if f"update/{below}/dw" in trace:
                r.hidden_changes += int(np.count_nonzero(trace[f"update/{below}/dw"]))
            fired = trace[f"forward/{above - 1}/times"] < learner.T          # pres of the update above
            r.dropped_fired += int(np.count_nonzero(fired & ~learner.keep_mask(sample.step, above - 1, fired.shape)))

    def check(self, sample: Sample, got: SampleResult, last: bool) -> bool:
        r, idx = self.report, self.index
        self.index += 1
        before = canonical_weights(self.learner)              # = the RTL's, compared up to here
        expected = expected_sample(self.learner, sample, self.params.P)
        p = self.params
        got_weights = None if got.weights is None else from_host(p, got.weights)
        r.samples += 1
        r.train_samples += int(sample.train)
        self._coverage(sample, expected)
        (r.cycles_train if sample.train else r.cycles_infer).append(got.cycles)
        golden_keys = [k for k in expected.trace if not k.startswith("update/")]
        if r.debug_tap:
            for key in golden_keys:
                r.expected[value_kind(key)] += int(np.count_nonzero(np.asarray(expected.trace[key]) != MISSING))
        r.expected["predictions"] += 1
        r.expected["output times"] += int(expected.times.size)
        changes = {s: expected.trace[f"update/{s}/dw"] for s in self.params.weight_stages
                   if f"update/{s}/dw" in expected.trace}
        if reads_back_weights(sample.train, last):
            r.expected["weights"] += sum(int(w.size) for w in expected.weights)
            r.expected["weight changes"] += sum(int(dw.size) for dw in changes.values())
            if got.weights is None:
                return self._fail(f"sample {idx}: the testbench did not read the weights back")
        if r.debug_tap:
            decoder = got.debug
            for kind, n in decoder.records.items():
                r.records[kind] = r.records.get(kind, 0) + n
            if decoder.errors:
                more = f" (and {len(decoder.errors) - 1} more)" if len(decoder.errors) > 1 else ""
                return self._fail(f"debug tap protocol error at sample {idx}: {decoder.errors[0]}{more}")
            got_trace = decoder.shaped()
            if got_weights is not None:
                for s, w in zip(p.weight_stages, got_weights):
                    got_trace[f"update/{s}/w"] = w.reshape(p.stages[s].weight_shape)
            # in execution order; update/<l>/w is the read-back (each layer changes once per sample)
            keys = [k for k in expected.trace
                    if not k.endswith("/dw") and (k in got_trace or not k.startswith("update/"))]
            d = first_divergence(expected.trace, got_trace, keys=keys)
            if d is not None:
                if d.expected == "present":
                    return self._fail(f"sample {idx}: the RTL reported nothing for {d.phase}/{d.layer}/{d.name}")
                return self._fail(describe(d, idx))
            extra = [k for k in decoder.trace if k not in expected.trace]
            if extra:
                return self._fail(f"sample {idx}: the RTL reported {', '.join(extra)}, which the golden model "
                                  f"did not record (the backward went further)")
            for key in golden_keys:
                r.compared[value_kind(key)] += int(np.count_nonzero(np.asarray(expected.trace[key]) != MISSING))
        top = p.top
        if got.pred != expected.pred:
            return self._fail(f"first divergence at sample {idx}, phase decision, layer {top}, result pred: "
                              f"expected {expected.pred}, got {got.pred}")
        r.compared["predictions"] += 1
        if not np.array_equal(got.times, expected.times):
            k = int(np.flatnonzero(got.times != expected.times)[0])
            return self._fail(f"first divergence at sample {idx}, phase forward, layer {top}, result times, "
                              f"neuron {k}: expected {expected.times[k]}, got {got.times[k]}")
        r.compared["output times"] += int(expected.times.size)
        if got_weights is not None:
            # the golden dw of every layer the sample updated: the read-back minus the weights before
            for s, w_before, w_got in zip(p.weight_stages, before, got_weights):
                if s not in changes:
                    continue
                dw_got = (w_got - w_before).reshape(changes[s].shape)
                if not np.array_equal(dw_got, changes[s]):
                    index = tuple(int(x) for x in np.argwhere(dw_got != changes[s])[0])
                    return self._fail(f"first divergence at sample {idx}, phase update, layer {s}, dw, index {index}: "
                                      f"expected {changes[s][index]}, got {dw_got[index]}")
                r.compared["weight changes"] += int(dw_got.size)
            for s, w_exp, w_got in zip(p.weight_stages, expected.weights, got_weights):
                if not np.array_equal(w_exp, w_got):
                    k, j = (int(x) for x in np.argwhere(w_exp != w_got)[0])
                    where = (f"output channel {k}, tap {j} (ci, ky, kx row-major)" if p.kind(s) == "conv"
                             else f"post neuron {k}, input {j}")
                    return self._fail(f"first divergence at sample {idx}, phase update, layer {s}, w, {where}: "
                                      f"expected {w_exp[k, j]}, got {w_got[k, j]}")
                r.compared["weights"] += int(w_exp.size)
        return True


def start_check(params: StidiCoreParams, weights, n_samples: int, *, reference: StidiCoreParams | None = None,
                simulator: str = "amaranth") -> StidiChecker:
    """A checker (and its empty report) for a run of ``n_samples`` samples on ``StidiCore(params)``
    under ``simulator``, against the golden learner of ``reference`` (default ``params``; a different
    config is the fault-injection check), both starting from ``weights``. Every testbench uses it."""
    report = StidiReport(config=f"{params.topology} P={params.P}", simulator=simulator, debug_tap=params.debug,
                         samples_in_job=n_samples)
    return StidiChecker(params, golden_learner(reference or params, copy.deepcopy(weights)), report)


def check_stidi(params: StidiCoreParams, weights, samples, *, reference: StidiCoreParams | None = None,
                vcd=None) -> StidiReport:
    """Bit-exact comparison of ``StidiCore(params)`` under Amaranth's simulator with the golden learner
    of ``reference`` (default ``params``), both starting from ``weights``."""
    checker = start_check(params, weights, len(samples), reference=reference)
    return check_run(checker.report, samples, lambda: rtl_run(params, weights, samples, vcd=vcd),
                     lambda sample, got, last: checker.check(sample, got, last=last))
