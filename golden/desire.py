"""Desire backpropagation, multiplication-free integer golden model: the specification of the RTL.

Every function is pure and integer-only (int64 carriers of declared widths, floor shifts, saturation
only where docs/golden-spec.md says). Arrays may carry leading batch axes where noted (inference);
training is online, one sample at a time. Layer l = 1..L has weights W_l of shape (N_l, N_{l-1}).
No data value is multiplied by another: sums of selected weights use ``select_sum`` (add/sub/skip),
the error weight of the hidden desire is a shift (pow2) or a sum of shifted bit planes (exact).
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .desire_config import ROUNDING_SALT, DesireConfig, init_weights, parse_topology
from .fixedpoint import MirroredWords, bit_length, saturate, select_sum
from .hashing import mix32, mix32_int
from .trace import Trace

__all__ = [
    "DesireConfig", "init_weights", "parse_topology", "encode", "dropout_masks", "forward", "Forward",
    "output_desire", "hidden_desire", "update_layer", "train_sample", "infer_counts", "classify",
]


@lru_cache(maxsize=None)
def _encoder_tables(cfg: DesireConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel value (256 rows): its spike raster (256, T), the trace of that raster (256, T) and
    whether it spikes at all in T steps (256,).

    Built by running the coder and the trace recurrence themselves, so a lookup is the same function.
    """
    pixel = np.arange(256, dtype=np.int64)
    vin = np.zeros(256, dtype=np.int64)
    spikes = np.zeros((time_steps := cfg.time_steps, 256), dtype=np.uint8)
    for t in range(time_steps):
        vin = vin + pixel
        spike = vin >= cfg.pixel_max
        vin = np.where(spike, vin - cfg.pixel_max, vin)
        spikes[t] = spike
    raster, trace = spikes.T.copy(), _trace(cfg, spikes).T.copy()
    spiking = raster.any(axis=1)
    raster.flags.writeable = trace.flags.writeable = spiking.flags.writeable = False
    return raster, trace, spiking


def encode(cfg: DesireConfig, pixels) -> np.ndarray:
    """Input coder: per pixel vin += k; spike iff vin >= 255; then vin -= 255. Shape (..., N0) -> (..., T, N0).

    vin starts at 0 for every sample and never exceeds 2*255 - 1 (9 bits unsigned).
    """
    pixels = np.asarray(pixels, dtype=np.uint8)
    return np.swapaxes(_encoder_tables(cfg)[0][pixels], -1, -2)


def dropout_masks(cfg: DesireConfig, step: int) -> list[np.ndarray]:
    """Keep masks of layers 0..L for training sample ``step`` (global counter q).

    k1 = mix32(seed ^ q); neuron n of layer k is kept iff (mix32(k1 ^ (k << 16) ^ n) >> 16) < KEEP16[k].
    Layers with drop probability 0 (always the output) keep everything and draw nothing.
    """
    k1 = np.uint32(mix32_int((cfg.seed ^ step) & 0xFFFFFFFF))
    masks = []
    for layer, size in enumerate(cfg.topology):
        keep = cfg.keep_threshold(layer)
        if keep >= 1 << 16:
            masks.append(np.ones(size, dtype=bool))
            continue
        r = mix32(k1 ^ np.uint32(layer << 16) ^ np.arange(size, dtype=np.uint32))
        masks.append((r >> np.uint32(16)).astype(np.int64) < keep)
    return masks


@dataclass(frozen=True)
class Forward:
    """What the forward pass of one sample (or a batch) leaves behind, per layer.

    Index 0 of each list is the input layer: ``spikes[0]`` are the (masked) input spikes and
    ``v[0]``/``traces[0]`` are None. For l >= 1: ``v[l]`` (..., T, N_l) membrane after the step's
    reset, ``spikes[l]`` (..., T, N_l) uint8, ``counts[l]`` (..., N_l), ``traces[l]`` (..., T, N_{l-1})
    the presynaptic trace of layer l's input after step t (training only, else None).
    """

    v: list
    spikes: list
    counts: list
    traces: list


def _layer_input(cfg: DesireConfig, spikes: list, layer: int) -> np.ndarray:
    """Spikes layer ``layer`` integrates at each step: same-step input for layer 1, else delayed by one."""
    source = spikes[layer - 1]
    if layer == 1:
        return source
    delayed = np.zeros_like(source)
    delayed[..., 1:, :] = source[..., :-1, :]
    return delayed


def _trace(cfg: DesireConfig, inputs: np.ndarray) -> np.ndarray:
    """x <- x - (x >> DS) + (s << FX), recorded after every step; unsigned, < 2**(FX+DS+1)."""
    arrivals = np.moveaxis(inputs.astype(np.int64) << cfg.trace_frac_bits, -2, 0)   # time-major views
    out = np.empty(arrivals.shape, dtype=np.int64)
    x = np.zeros(arrivals.shape[1:], dtype=np.int64)
    for t in range(cfg.time_steps):
        x -= x >> cfg.decay_shift
        x += arrivals[t]
        out[t] = x
    return np.moveaxis(out, 0, -2)


def _words(weights_l) -> np.ndarray:
    """The int64 weights of a layer given as an array or as a ``MirroredWords``."""
    return weights_l.words if isinstance(weights_l, MirroredWords) else weights_l


def _column_sums(cfg: DesireConfig, weights_l, selector, columns) -> np.ndarray:
    """select_sum(selector, W_l[:, columns].T): what the selected inputs ``columns`` add to each neuron."""
    if isinstance(weights_l, MirroredWords):
        return weights_l.select_columns(selector, columns)
    return select_sum(selector, weights_l[:, columns].T, cfg.weight_bits)


def _row_sums(cfg: DesireConfig, weights_l, selector) -> np.ndarray:
    """select_sum(selector, W_l): sums of selected rows (post neurons) of the weights."""
    if isinstance(weights_l, MirroredWords):
        return weights_l.select_rows(selector)
    return select_sum(selector, weights_l, cfg.weight_bits)


def input_trace(cfg: DesireConfig, pixels, mask=None) -> np.ndarray:
    """Layer 1's presynaptic trace (..., T, N0) straight from the pixels: a table lookup of the same
    recurrence ``forward`` runs (dropped pixels never spike, so their trace is 0)."""
    table = _encoder_tables(cfg)[1][np.asarray(pixels, dtype=np.uint8)]
    if mask is not None:
        table = np.where(mask[:, None], table, 0)
    return np.swapaxes(table, -1, -2)


#: ``forward`` runs one sample in a single loop over the steps (``_forward_steps``) while layers 2..L
#: hold at most this many weights: it sums their inputs per step in int64, which beats one product per
#: layer over all steps (``_forward_layers``) only while those sums are small. Both give the same bits.
STEPWISE_MAX_WORDS = 1 << 16


def forward(cfg: DesireConfig, weights, input_spikes, masks=None, train: bool = False,
            first_trace=None) -> Forward:
    """All T steps of all layers.

    Per layer l and step t (every neuron at once):
      V = V - (V >> DS)                                  decay first (floor shift: ceil(0.75 V))
      V = sat_VBITS(V + sum of W_l[j, i] over inputs i that spiked)   exact sum, saturate once
      s = (V >= TH_l) & mask_l                           TH_l = train_threshold(l) or theta
      V = V - (s ? TH_l : 0)                             subtract reset; dropped neurons never reset
    Layer l >= 2 integrates layer l-1's spikes of step t-1 (one-step delay), so all layers of a step
    can run in parallel in hardware. ``masks`` None means keep everything (inference).
    ``weights`` are int64 arrays or ``MirroredWords`` (same sums, without converting the words each call).
    ``first_trace`` may supply layer 1's trace precomputed by ``input_trace`` (same values, faster).
    One sample of a small network runs all layers in one loop over the steps, anything else layer by
    layer: two schedules of the same sums (tests/test_desire.py checks they agree).
    """
    input_spikes = np.asarray(input_spikes, dtype=np.uint8)
    if masks is not None:
        input_spikes = input_spikes & masks[0].astype(np.uint8)
    return _forward_masked(cfg, weights, input_spikes, masks, train, first_trace)


def _forward_masked(cfg: DesireConfig, weights, input_spikes, masks, train: bool, first_trace,
                    active=None) -> Forward:
    """``forward`` of input spikes already masked; ``active`` may list the inputs that spike at all
    (``train_sample`` knows them from the pixels), else they are found from the spikes."""
    if input_spikes.ndim == 2 and sum(_words(w).size for w in weights[1:]) <= STEPWISE_MAX_WORDS:
        result = _forward_steps(cfg, weights, input_spikes, masks, train, first_trace, active)
        if result is not None:
            return result
    return _forward_layers(cfg, weights, input_spikes, masks, train, first_trace)


def _saturation_free(cfg: DesireConfig, largest: int) -> bool:
    """True when no membrane fed currents of magnitude <= ``largest`` can reach the VBITS limits.

    |V| <= 2**DS (max|I| + 1) for any input sequence (decay keeps <= (1 - 2**-DS) |V| plus one LSB and
    the reset only moves V towards 0): when that fits, saturation is the identity and is skipped.
    """
    return ((largest + 1) << cfg.decay_shift) <= (1 << (cfg.membrane_bits - 1)) - 1


def _forward_layers(cfg: DesireConfig, weights, input_spikes, masks, train: bool, first_trace) -> Forward:
    """``forward`` layer by layer: each layer's currents of all T steps in one product, then its steps.

    Takes any leading batch axes. ``input_spikes`` are already masked.
    """
    spikes = [input_spikes]
    v, counts, traces = [None], [spikes[0].sum(axis=-2, dtype=np.int64)], [None]
    for layer in range(1, cfg.layers + 1):
        inputs = _layer_input(cfg, spikes, layer)
        # Only inputs that spike at least once contribute: summing over them alone is the same sum.
        active = np.flatnonzero(inputs.reshape(-1, inputs.shape[-1]).any(axis=0))
        currents = _column_sums(cfg, weights[layer - 1], inputs[..., active], active)
        threshold = cfg.train_threshold(layer) if train else cfg.theta
        # A dropped neuron never spikes: its firing level is one above the largest membrane value.
        limit = threshold if masks is None else np.where(masks[layer], threshold, 1 << (cfg.membrane_bits - 1))
        saturating = currents.size and not _saturation_free(cfg, int(np.abs(currents).max()))
        step_currents = np.moveaxis(currents, -2, 0)                # time-major views, (T, ..., N_l)
        v_out = np.empty(step_currents.shape, dtype=np.int64)
        s_out = np.empty(step_currents.shape, dtype=bool)
        previous = np.zeros(step_currents.shape[1:], dtype=np.int64)
        for t in range(cfg.time_steps):
            vm = v_out[t]
            np.right_shift(previous, cfg.decay_shift, out=vm)
            np.subtract(previous, vm, out=vm)
            vm += step_currents[t]
            if saturating:
                vm[...] = saturate(vm, cfg.membrane_bits)
            fire = np.greater_equal(vm, limit, out=s_out[t])
            np.subtract(vm, threshold, out=vm, where=fire)
            previous = vm
        v_out, s_out = np.moveaxis(v_out, 0, -2), np.moveaxis(s_out.view(np.uint8), 0, -2)
        v.append(v_out)
        spikes.append(s_out)
        counts.append(s_out.sum(axis=-2, dtype=np.int64))
        if not train:
            traces.append(None)
        elif layer == 1 and first_trace is not None:
            traces.append(first_trace)
        else:
            traces.append(_trace(cfg, inputs))
    return Forward(v, spikes, counts, traces)


def _forward_steps(cfg: DesireConfig, weights, input_spikes, masks, train: bool, first_trace, active=None):
    """``forward`` of one sample (``input_spikes`` (T, N0), masked) with all layers in one loop over the steps.

    The state is one vector: the membranes of layers 1..L and, when training, the traces of the inputs
    of layers 2..L, which decay the same way (x - (x >> DS)). Each step decays it, adds the step's
    drive, fires and resets. The drive is layer 1's currents (all steps in one product, as in
    ``_forward_layers``), and for layer l >= 2 at step t+1: the int64 sum of W_l's columns of the
    layer-(l-1) neurons that spiked at step t, and those spikes << FX for its trace. Returns None when
    a membrane could saturate (``_saturation_free`` fails for the largest current), leaving that rare
    case to ``_forward_layers``.
    """
    sizes, steps, L = cfg.topology, cfg.time_steps, cfg.layers
    ends = np.cumsum(sizes[1:]).tolist()                     # layer l's membranes: [ends[l-2], ends[l-1])
    membranes = ends[-1]
    layer_slice = [None] + [slice(end - size, end) for size, end in zip(sizes[1:], ends)]
    arrival_slice = [None, None]                                  # layer l's trace entries, l >= 2
    width = membranes
    for layer in range(2, L + 1):
        arrival_slice.append(slice(width, width + sizes[layer - 1]) if train else None)
        width += sizes[layer - 1] if train else 0
    drive = np.zeros((steps, width), dtype=np.int64)
    if active is None:
        active = np.flatnonzero(input_spikes.any(axis=0))
    drive[:, layer_slice[1]] = _column_sums(cfg, weights[0], input_spikes[:, active], active)
    threshold = np.empty(membranes, dtype=np.int64)
    limit = np.empty(membranes, dtype=np.int64)
    for layer in range(1, L + 1):
        threshold[layer_slice[layer]] = cfg.train_threshold(layer) if train else cfg.theta
        # A dropped neuron never spikes: its firing level is one above the largest membrane value.
        limit[layer_slice[layer]] = threshold[layer_slice[layer]] if masks is None else np.where(
            masks[layer], threshold[layer_slice[layer]], 1 << (cfg.membrane_bits - 1))
    # W_l transposed (a copy, rows = inputs), so that selecting the inputs that spiked takes whole rows
    deeper = [(np.ascontiguousarray(_words(weights[layer - 1]).T), layer_slice[layer - 1], layer_slice[layer],
               arrival_slice[layer]) for layer in range(2, L + 1)]
    state = np.empty((steps, width), dtype=np.int64)
    fired = np.empty((steps, membranes), dtype=bool)
    previous = np.zeros(width, dtype=np.int64)
    for t in range(steps):
        now = state[t]
        np.right_shift(previous, cfg.decay_shift, out=now)
        np.subtract(previous, now, out=now)
        now += drive[t]
        v = now[:membranes]
        fire = np.greater_equal(v, limit, out=fired[t])
        np.subtract(v, threshold, out=v, where=fire)
        if t + 1 < steps:
            following = drive[t + 1]
            for inputs_words, source, current, arrival in deeper:
                below = fire[source]
                np.add.reduce(inputs_words.take(below.nonzero()[0], axis=0), axis=0, out=following[current])
                if arrival is not None:
                    np.left_shift(below, cfg.trace_frac_bits, out=following[arrival], dtype=np.int64)
        previous = now
    if not _saturation_free(cfg, int(np.abs(drive[:, :membranes]).max())):
        return None
    raster = fired.view(np.uint8)
    all_counts = raster.sum(axis=0, dtype=np.int64)
    v, spikes, counts = [None], [input_spikes], [input_spikes.sum(axis=0, dtype=np.int64)]
    traces = [None, None if not train else first_trace if first_trace is not None else _trace(cfg, input_spikes)]
    for layer in range(1, L + 1):
        v.append(state[:, layer_slice[layer]])
        spikes.append(raster[:, layer_slice[layer]])
        counts.append(all_counts[layer_slice[layer]])
        if layer >= 2:
            traces.append(state[:, arrival_slice[layer]] if train else None)
    return Forward(v, spikes, counts, traces)


def output_desire(cfg: DesireConfig, counts, label: int):
    """(care, want) of the output layer: the label wants +1 and cares iff TM - c > K_OUT;
    every other neuron wants -1 and cares iff c > K_OUT."""
    counts = np.asarray(counts, dtype=np.int64)
    want = np.arange(counts.shape[-1]) == label
    care = np.where(want, cfg.target_count - counts > cfg.k_out, counts > cfg.k_out)
    return care, want


def error_weight(cfg: DesireConfig, counts, want) -> np.ndarray:
    """e = |TM*want - c| (0..T, the L1 count error), or its leading one 2**floor(log2 e) in pow2 mode."""
    counts = np.asarray(counts, dtype=np.int64)
    error = np.where(want, np.abs(cfg.target_count - counts), counts)
    if cfg.error_mode == "exact":
        return error
    return np.where(error > 0, np.left_shift(1, np.maximum(bit_length(error) - 1, 0)), 0)


def hidden_desire(cfg: DesireConfig, weights_l, care, want, counts, mask):
    """Desire of layer l-1 from layer l: D_i = sum_j g_j e_j W_l[j, i], g_j = care&mask ? (want ? +1 : -1) : 0.

    Computed as bit planes: D = sum_b (sum_{j: bit b of e_j} g_j W_l[j, i]) << b, i.e. ternary
    add/sub/skip sums and shifts (one plane in pow2 mode). Returns (D, care_{l-1}, want_{l-1}) with
    care = |D| >= K_LIN and want = D > 0. W_l is the weight BEFORE this sample's update.
    """
    g = np.where(care & mask, np.where(want, 1, -1), 0).astype(np.int64)
    e = error_weight(cfg, counts, want)
    bits = np.arange(int(bit_length(e.max())) if e.size else 0)
    planes = np.where((e >> bits[:, None]) & 1 == 1, g, 0)                   # (bit planes, N_l)
    used = planes.any(axis=1)                       # an empty plane sums to 0: skipping it is exact
    total = np.zeros(weights_l.shape[1], dtype=np.int64)
    if used.any():      # all planes in one product (one pass over W_l), then shifted and added in int64
        total += (_row_sums(cfg, weights_l, planes[used]) << bits[used, None]).sum(axis=0, dtype=np.int64)
    return total, np.abs(total) >= cfg.k_lin, total > 0


def satisfied_care(cfg: DesireConfig, care, want, counts) -> np.ndarray:
    """The optional hidden "satisfied" check: with S = hidden_satisfied_count > 0, a neuron that wants +1
    and spiked S times or more stops caring (care & ~(want & c >= S)); S = 0 leaves care as it is."""
    if cfg.hidden_satisfied_count == 0:
        return care
    return care & ~(want & (np.asarray(counts, dtype=np.int64) >= cfg.hidden_satisfied_count))


def desires(cfg: DesireConfig, weights, counts, masks, label: int):
    """Desire of every layer, output first (spec 4.3): (care, want, sums), lists indexed by layer 1..L
    (index 0 unused; sums[l] = D of layer l, None for the output layer)."""
    L = cfg.layers
    care, want, sums = ([None for _ in range(L + 1)] for _ in range(3))
    care[L], want[L] = output_desire(cfg, counts[L], label)
    for layer in range(L, 1, -1):
        sums[layer - 1], care[layer - 1], want[layer - 1] = hidden_desire(
            cfg, weights[layer - 1], care[layer], want[layer], counts[layer], masks[layer])
        care[layer - 1] = satisfied_care(cfg, care[layer - 1], want[layer - 1], counts[layer - 1])
    return care, want, sums


def _stochastic_bits(cfg: DesireConfig, step: int, layer: int, rows, cols, shift: int):
    """Per-synapse rounding offsets in [0, 2**SH): mix32(mix32(seed ^ SALT ^ q) ^ (l << 24) ^ (j << 12) ^ i)."""
    key = np.uint32(mix32_int((cfg.seed ^ ROUNDING_SALT ^ step) & 0xFFFFFFFF))
    index = (np.uint32(layer << 24) ^ (np.asarray(rows, dtype=np.uint32)[:, None] << np.uint32(12))
             ^ np.asarray(cols, dtype=np.uint32)[None, :])
    return (mix32(key ^ index) & np.uint32((1 << shift) - 1)).astype(np.int64)


def update_layer(cfg: DesireConfig, weights_l, spikes_l, traces_l, care, want, mask, epoch: int,
                 step: int, layer: int, in_place: bool = False, active=None) -> np.ndarray:
    """New W_l after the sign-only STDP-like update of one sample.

    For each post neuron j with care & mask & (count > 0):
      A_i = sum of traces_l[t, i] over the steps t where j spiked          (exact, unsigned)
      mag = (A + 2**(SH-1)) >> SH   (nearest, half up)  |  (A + hash mod 2**SH) >> SH  (stochastic)
            A << -SH when SH <= 0 (no rounding)
      W[j, i] = sat_WBITS(W[j, i] + (want ? mag : -mag))
    Other rows are unchanged, and so are inputs whose trace is 0 at every step (their mag is 0).
    ``in_place`` updates and returns ``weights_l`` itself instead of a copy; a ``MirroredWords`` is
    always updated in place (words and float64 copy together, ``MirroredWords.add_saturating``).
    ``active`` may list the inputs whose trace is nonzero at some step, i.e. that spike at all (the
    caller may know them); else they are found from ``traces_l``.
    """
    mirrored = isinstance(weights_l, MirroredWords)
    if mirrored and not in_place:
        raise ValueError("MirroredWords weights are updated in place: pass in_place=True")
    counts = spikes_l.sum(axis=0, dtype=np.int64)
    rows = np.flatnonzero(care & mask & (counts > 0))
    new = weights_l if in_place else np.array(weights_l, dtype=np.int64, copy=True)
    if rows.size == 0:
        return new
    cols = np.flatnonzero(traces_l.any(axis=0)) if active is None else active
    accum = select_sum(spikes_l[:, rows].T, traces_l[:, cols], cfg.trace_bits + 1)   # (rows, cols)
    shift = cfg.update_shift(epoch)
    if shift <= 0:
        magnitude = accum << -shift
    elif cfg.rounding == "nearest":
        magnitude = (accum + (1 << (shift - 1))) >> shift
    else:
        magnitude = (accum + _stochastic_bits(cfg, step, layer, rows, cols, shift)) >> shift
    delta = np.where(want[rows, None], magnitude, -magnitude)
    if mirrored:
        new.add_saturating(rows, cols, delta)           # the line below, on both copies of the weights
    else:
        block = np.ix_(rows, cols)
        new[block] = saturate(new[block] + delta, cfg.weight_bits)
    return new


def train_sample(cfg: DesireConfig, weights, pixels, label: int, step: int, epoch: int,
                 trace: Trace | None = None, in_place: bool = False):
    """One online training sample: forward, desire (output then hidden, last to first), update.

    Returns (new weights, output counts). All desires are computed from the weights before any
    update. If ``trace`` is given, every intermediate is recorded in it (docs/golden-spec.md, "Trace").
    ``in_place`` overwrites the given weight arrays instead of returning copies (the trainer's fast path);
    weights given as ``MirroredWords`` (in_place only) come back as the same objects, updated.
    """
    masks = dropout_masks(cfg, step)
    # A dropped pixel never spikes, and neither does a pixel of value 0: the same spikes and trace.
    kept = np.where(masks[0], np.asarray(pixels, dtype=np.uint8), 0)
    active = np.flatnonzero(_encoder_tables(cfg)[2][kept])          # the pixels that spike at all
    fwd = _forward_masked(cfg, weights, encode(cfg, kept), masks, True, input_trace(cfg, kept), active)
    L = cfg.layers
    care, want, sums = desires(cfg, weights, fwd.counts, masks, label)
    new = [update_layer(cfg, weights[layer - 1], fwd.spikes[layer], fwd.traces[layer], care[layer], want[layer],
                        masks[layer], epoch, step, layer, in_place, active if layer == 1 else None)
           for layer in range(1, L + 1)]
    if trace is not None:
        trace.record("encode", 0, "mask", masks[0])
        trace.record("encode", 0, "spikes", fwd.spikes[0])
        for layer in range(1, L + 1):
            trace.record("forward", layer, "mask", masks[layer])
            trace.record("forward", layer, "trace", fwd.traces[layer])
            trace.record("forward", layer, "v", fwd.v[layer])
            trace.record("forward", layer, "spikes", fwd.spikes[layer])
            trace.record("forward", layer, "counts", fwd.counts[layer])
        for layer in range(L, 0, -1):
            if sums[layer] is not None:
                trace.record("desire", layer, "sum", sums[layer])
            trace.record("desire", layer, "care", care[layer])
            trace.record("desire", layer, "want", want[layer])
        for layer in range(1, L + 1):
            trace.record("update", layer, "weights", _words(new[layer - 1]))
    return new, fwd.counts[L]


def infer_counts(cfg: DesireConfig, weights, pixels) -> np.ndarray:
    """Output spike counts in inference mode (no dropout, threshold theta); pixels (..., N0)."""
    return forward(cfg, weights, encode(cfg, pixels)).counts[cfg.layers]


def classify(counts) -> np.ndarray:
    """argmax of the output counts; -1 when the maximum is not unique (a tie, all-zero included, is wrong)."""
    counts = np.asarray(counts)
    best = counts.argmax(axis=-1)
    top = counts.max(axis=-1, keepdims=True)
    unique = (counts == top).sum(axis=-1) == 1
    return np.where(unique, best, -1)
