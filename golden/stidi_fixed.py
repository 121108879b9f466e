"""Binarized STiDi-BP, integer datapath: the multiplication-free golden model the RTL reproduces.

Every function here is pure integer numpy (``np.int64``) made of adds, subtracts, compares,
selects and shifts; there is no data-by-data multiply, divide, modulo or power
(tests/test_integer_purity.py parses this file's AST to keep it so). The conv displacement's
scatter is :func:`~mfsnn.golden.fixedpoint.scatter_sum`, an exact integer sum. Constants that need
arithmetic (the encoding ROM, patch index tables, initial weights) are computed host-side in
:mod:`mfsnn.golden.stidi`. The float reference (:mod:`mfsnn.golden.stidi_float`) reuses the
forward functions with float weights/thresholds.

Conventions (docs/golden-spec-stidi.md): time steps ``t = 0 .. T-1``; a neuron that never fires has
time ``T`` ("silent"); a stage's spike times are an int64 array of its shape ((N,) or (C, H, W));
forward weights are stored transposed, ``(fan_in, fan_out)``, so an input spike selects a row.
"""

import numpy as np

from .fixedpoint import bit_length, saturate, scatter_sum


# ------------------------------------------------------------------------------------------------
# Forward: accumulate-current integrate-and-fire (exact ramp PSP)
# ------------------------------------------------------------------------------------------------

def _group_rows(keys, rows):
    """Sum the rows of ``rows`` sharing a key: (sorted unique keys, sums). Adds only."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(rows[order], starts, axis=0)


def fc_currents(t_in, w_fwd, T: int) -> np.ndarray:
    """C[j, s]: the sum of forward weights ``w_fwd[i, j]`` over inputs i that spike at step s.

    ``t_in`` (N_in,) spike times, ``w_fwd`` (N_in, N_out); the result is neuron-major (N_out, T).
    Only spikes at s < T-1 are counted: a spike at T-1 (or a silent input, T) can no longer change
    any membrane inside the window.
    """
    t_in = np.asarray(t_in).reshape(-1)
    current = np.zeros((w_fwd.shape[1], T), dtype=w_fwd.dtype)
    active = np.flatnonzero(t_in < T - 1)
    if len(active):
        steps, sums = _group_rows(t_in[active], w_fwd[active])
        current[:, steps] = sums.T
    return current


def conv_currents(t_in, w_fwd, stage, T: int):
    """C[co, q, s] of a stride-1 'same' convolution for the output positions q that receive any
    spike (event-driven, one row of weights per input spike); returns (C, positions).

    ``t_in`` (Cin, H, W); ``w_fwd`` (K, Cout) with K = Cin*k*k in (ci, ky, kx) order; ``stage``
    carries the host-side tables ``interior`` (where the Cin*H*W inputs sit in the zero-padded
    flat map), ``patches`` (P, K) (the padded-map index each output position reads per kernel tap)
    and ``step_bits`` (T < 2**step_bits). Padding is a silent input (time T). Positions that
    receive no spike before T-1 keep U = 0 < Theta: they are silent and are left out of C.
    """
    padded = np.full(stage.padded_size, T, dtype=np.int64)
    padded[stage.interior] = np.asarray(t_in).reshape(-1)
    taps = padded[stage.patches]                                 # (P, K) pre-synaptic times
    pos, tap = np.nonzero(taps < T - 1)                          # pos ascending
    new = np.concatenate(([True], pos[1:] != pos[:-1])) if len(pos) else np.zeros(0, bool)
    positions = pos[new]
    slot = np.cumsum(new) - 1                                    # index of pos among positions
    current = np.zeros((w_fwd.shape[1], len(positions), T), dtype=w_fwd.dtype)
    if len(pos):
        keys, sums = _group_rows((slot << stage.step_bits) | taps[pos, tap], w_fwd[tap])
        current[:, keys >> stage.step_bits, keys & ((1 << stage.step_bits) - 1)] = sums.T
    return current, positions


def integrate(current, threshold, T: int):
    """Integrate-and-fire over the window: (I, U, times).

    ``current`` is neuron-major (..., T). Per step t: ``U += I`` (U(t) = sum of I(s) for s < t),
    fire if ``U >= threshold`` (first crossing only), then this step's arrivals ``I += C[t]``.
    Returns I and U after each step as time-major views (T, ...) and the first crossing time per
    neuron (T where U never reaches the threshold in 0..T-1).
    """
    current_sum = np.cumsum(current, axis=-1)                    # I after step t's arrivals
    membrane = np.empty_like(current_sum)
    membrane[..., 0] = 0
    np.cumsum(current_sum[..., :-1], axis=-1, out=membrane[..., 1:])   # U(t) = sum_{s<t} I(s)
    crossed = membrane >= threshold
    first = crossed.argmax(axis=-1)
    fired = np.take_along_axis(crossed, first[..., None], axis=-1)[..., 0]
    times = np.where(fired, first, T).astype(np.int64)
    return np.moveaxis(current_sum, -1, 0), np.moveaxis(membrane, -1, 0), times


def min_pool(t_in, k: int, out_shape):
    """k x k min-time pooling, stride k, no padding: (times, argmin).

    ``t_in`` (C, H, W) with H, W multiples of k; ``out_shape`` = (C, H/k, W/k). The argmin is the
    tap index ky*k + kx of the first earliest spike in row-major window order (ties go to the first).
    """
    c, ho, wo = out_shape
    windows = t_in.reshape(c, ho, k, wo, k).transpose(0, 1, 3, 2, 4).reshape(c, ho, wo, -1)
    arg = windows.argmin(axis=-1)
    return np.take_along_axis(windows, arg[..., None], axis=-1)[..., 0], arg.astype(np.int64)


def unpool(d_pooled, arg, k: int, out_shape):
    """Route each pooled value to its window's argmin position; every other position gets 0.

    ``out_shape`` is the (C, H, W) of the map before pooling.
    """
    c, ho, wo = d_pooled.shape
    taps = np.zeros((c, ho, wo, k, k), dtype=d_pooled.dtype)
    np.put_along_axis(taps.reshape(c, ho, wo, -1), arg[..., None], d_pooled[..., None], axis=-1)
    return taps.transpose(0, 1, 3, 2, 4).reshape(out_shape)


# ------------------------------------------------------------------------------------------------
# Decision and output targets
# ------------------------------------------------------------------------------------------------

def decide(times, membrane, T: int) -> int:
    """Strict classification: the earliest output spike; on a tie the larger U at that step, then
    the lowest index; if no output fired, argmax U(T-1) (lowest index on ties)."""
    first = int(times.min())
    if first >= T:
        return int(np.argmax(membrane[T - 1]))
    u = membrane[first]
    floor = u.min()
    return int(np.argmax(np.where(times == first, u, floor - 1)))


def early_exit_steps(times, T: int, block: int) -> np.ndarray:
    """The last output-layer step an early-exit inference computes for each output neuron (§7): blocks
    of ``block`` neurons in order, block b through ``min(h_b, f_b)`` (its own first spike f_b, the
    earliest spike h_b of the blocks before it, T-1 for the first)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, not {block}")
    times = np.asarray(times, dtype=np.int64)
    last = np.empty(times.shape, dtype=np.int64)
    horizon = T - 1
    for b0 in range(0, times.size, block):
        horizon = min(horizon, int(times[b0:b0 + block].min()))
        last[b0:b0 + block] = horizon
    return last


def early_exit_times(times, T: int) -> np.ndarray:
    """The output times an early-exit inference reports (§7): the earliest spike(s), T elsewhere."""
    times = np.asarray(times, dtype=np.int64)
    return np.where(times == times.min(), times, T)


def targets(times, membrane, label: int, T: int, add: int, neg: int):
    """Relative output targets (notes section 4): (target times, case 1..5)."""
    target = times.copy()
    first = int(times.min())
    last = int(times.max())
    if first >= T:                                    # 1: nothing fired
        target[:] = T
        target[label] = T - add
        return target, 1
    tied = times == first
    winner = int(np.argmax(tied))                     # index-first argmin
    if winner == label and int(tied.sum()) == 1:      # 2: correct unique winner
        return target, 2
    if winner == label or first == last or times[label] == first:
        target[tied] = min(first + add, T)            # 3 (label tied first) / 4 (wrong, label tied or all equal)
        target[label] = max(first - neg, 0)
        return target, 3 if winner == label else 4
    u = membrane[first]                               # 5: a wrong neuron wins alone or with others
    vwin = int(np.argmax(np.where(tied, u, u.min() - 1)))
    target[vwin] = min(first + add, last)
    target[label] = max(first - neg, 0)
    return target, 5


def sign(x) -> np.ndarray:
    """-1, 0, +1 by compares."""
    x = np.asarray(x)
    return (x > 0).astype(np.int64) - (x < 0).astype(np.int64)


# ------------------------------------------------------------------------------------------------
# Backward (integer)
# ------------------------------------------------------------------------------------------------

#: Guard bits of the L2 error norm: error words below 2**-NORM_GUARD of the largest do not count.
NORM_GUARD = 8


def quantize_error(displacement, times, levels: int, norm: str = "max"):
    """Hidden error: clip rule, then power-of-two levels from a leading-one detector.

    ``D = 0`` where ``t == 0 and D < 0`` (a target before step 0 is clipped). With
    ``m = msb(|D|)`` and ``emax = max m``, each nonzero D gets ``lvl = m - emax - r + levels``, and
    ``lvl < 0`` drops it. ``norm="max"``: r = 0 (the largest error always takes level ``levels``).
    ``norm="l2"``: r = floor(log2(||D||_2 / 2**emax)) from the powers of two (:func:`l2_shift`), so
    an error spread over many neurons takes smaller steps, like the float reference's L2-normalized
    displacement. Returns (sign in {-1,0,+1}, lvl >= 0, 0 where the sign is 0).
    """
    d = np.where((times == 0) & (displacement < 0), 0, displacement)
    s = np.zeros(d.shape, np.int64)
    lvl = np.zeros(d.shape, np.int64)
    nonzero = np.flatnonzero(d)
    if not len(nonzero):
        return s, lvl
    values = d.reshape(-1)[nonzero]
    relative = bit_length(np.abs(values))                # msb(|D|) + 1 ...
    relative = relative - relative.max()                 # ... minus that of the largest: m - emax <= 0
    level = relative + levels - (l2_shift(relative) if norm == "l2" else 0)
    keep = level >= 0
    s.reshape(-1)[nonzero[keep]] = sign(values[keep])
    lvl.reshape(-1)[nonzero[keep]] = level[keep]
    return s, lvl


def l2_shift(relative) -> int:
    """r = floor(log2 sqrt(sum 4**relative)) for msb offsets ``relative`` = m - emax <= 0, in integers:
    ``S = sum of 1 << 2*(relative + G)`` over offsets >= -G (G = NORM_GUARD; a 2G + 1 + log2(N) bit
    adder), ``r = (msb(S) >> 1) - G``. r = 0 when one error dominates, about log2(n)/2 for n equal ones.
    """
    counted = relative[relative >= -NORM_GUARD]
    total = int(np.sum(np.left_shift(np.int64(1), (counted + NORM_GUARD) << 1)))
    return ((total.bit_length() - 1) >> 1) - NORM_GUARD


def _round_shift(x, r: int):
    """x >= 0 scaled by 2**-r, rounding half up (round half away from zero once the sign is applied)."""
    if r == 0:
        return x
    return (x + (1 << (r - 1))) >> r


def fc_backward(w, s, lvl, t_post, t_pre, pre_ok, want_d: bool, T: int, weight_bits: int, lr_shift: int):
    """One FC layer's update and, if asked, the displacement it sends down.

    ``w`` (N_in, N_out) latent weights, updated in place. For each post k with s_k != 0 and each
    pre j with ``pre_ok[j]`` (fired, not dropped) and ``t_j <= t_k``:
    ``w[j,k] = sat(w[j,k] - s_k * (((t_k - t_j) << lvl_k) >> lr_shift))`` and
    ``D_j += s_k * (w_new[j,k] << lvl_k)``. Returns (dw as the signed change (N_in, N_out) restricted to
    the touched block as (rows, cols, block), D or None).
    """
    cols = np.flatnonzero(s)
    t_k = t_post[cols]
    rows = np.flatnonzero(pre_ok & (t_pre <= t_k.max()) & (want_d | (t_pre < T - 1)))
    if not len(rows):
        return (rows, cols, np.zeros((0, len(cols)), np.int64)), (np.zeros(len(t_pre), np.int64) if want_d else None)
    t_j = t_pre[rows]
    mask = t_j[:, None] <= t_k[None, :]
    step = _round_shift(np.where(mask, t_k[None, :] - t_j[:, None], 0) << lvl[cols][None, :], lr_shift)
    positive = (s[cols] > 0)[None, :]
    block = np.ix_(rows, cols)
    old = w[block]
    new = saturate(np.where(positive, old - step, old + step), weight_bits)
    w[block] = new
    d = None
    if want_d:
        term = np.where(mask, new << lvl[cols][None, :], 0)
        d = np.zeros(len(t_pre), np.int64)
        d[rows] = np.where(positive, term, -term).sum(axis=1)
    return (rows, cols, new - old), d


def conv_backward(w, s, lvl, t_post, t_pre, pre_ok, stage, want_d: bool, T: int, weight_bits: int, lr_shift: int):
    """One conv layer's update (summed over positions, one saturation per weight) and displacement.

    ``w`` (K, Cout) latent weights, updated in place; ``s``, ``lvl``, ``t_post`` (Cout, H, W);
    ``t_pre``, ``pre_ok`` (Cin, H, W). For every post (co, p) with s != 0 and tap q whose pre is ok
    and ``t_pre <= t_post``: step = ((t_post - t_pre) << lvl) >> lr_shift;
    ``w[q, co] = sat(w[q, co] - sum_p s * step)``; ``D_pre += s * (w_new[q, co] << lvl)``.
    Returns (dw (K, Cout), D (Cin, H, W) or None).
    """
    cout = w.shape[1]
    co, pos = np.nonzero(s.reshape(cout, -1))
    padded = np.full(stage.padded_size, T, dtype=np.int64)
    padded[stage.interior] = np.where(pre_ok, t_pre, T).reshape(-1)
    index = stage.patches[pos]                                   # (R, K) padded-map indices
    taps = padded[index]
    t_k = t_post.reshape(cout, -1)[co, pos][:, None]
    shift = lvl.reshape(cout, -1)[co, pos][:, None]
    positive = (s.reshape(cout, -1)[co, pos] > 0)[:, None]
    mask = (taps < T) & (taps <= t_k)
    step = _round_shift(np.where(mask, t_k - taps, 0) << shift, lr_shift)
    signed = np.where(positive, step, -step)
    total = np.zeros_like(w)
    if len(co):
        chans, sums = _group_rows(co, signed)                    # sum over positions per channel
        total[:, chans] = sums.T
    new = saturate(w - total, weight_bits)
    dw = new - w
    w[...] = new
    d = None
    if want_d:
        term = np.where(mask, new[:, co].T << shift, 0)
        term = np.where(positive, term, -term)
        term_bits = weight_bits + (int(shift.max()) if len(co) else 0)   # |term| <= 2**(WBITS-1) << lvl
        flat = scatter_sum(index, term, stage.padded_size, term_bits)
        d = flat[stage.interior].reshape(t_pre.shape)
    return dw, d


def forward_weights(w, forward: str, fwd_shift: int) -> np.ndarray:
    """The forward copy of latent weights: 'binary' = +1 if w >= 0 else -1 (the MSB, sign(0) = +1);
    'real' = w >> fwd_shift (arithmetic shift: a multi-bit weight, still add-only)."""
    if forward == "binary":
        return np.where(w >= 0, 1, -1).astype(np.int64)
    return w >> fwd_shift


# ------------------------------------------------------------------------------------------------
# One sample: forward, decision, targets, backward
# ------------------------------------------------------------------------------------------------

def forward(net, t0, trace=None):
    """All stages' spike times, pool argmins and the output layer's U (T, N_out).

    ``net`` supplies ``stages``, ``T``, ``w_fwd`` and ``thresholds`` (indexed by stage).
    """
    T = net.T
    times, argmins, membrane = [t0], [None], None
    for l in range(1, len(net.stages)):
        stage = net.stages[l]
        t_in = times[l - 1]
        if stage.kind == "pool":
            t, arg = min_pool(t_in, stage.k, stage.shape)
            times.append(t)
            argmins.append(arg)
            if trace is not None:
                trace.record("forward", l, "times", t)
                trace.record("forward", l, "argmin", arg)
            continue
        if stage.kind == "fc":
            i_acc, membrane, t = integrate(fc_currents(t_in, net.w_fwd[l], T), net.thresholds[l], T)
        else:                                                      # only positions that receive spikes
            current, positions = conv_currents(t_in, net.w_fwd[l], stage, T)
            i_act, u_act, t_act = integrate(current, net.thresholds[l], T)
            cout = stage.shape[0]
            t = np.full((cout, stage.patches.shape[0]), T, dtype=np.int64)
            t[:, positions] = t_act
            t = t.reshape(stage.shape)
            if trace is not None:
                i_acc = np.zeros((T, cout, stage.patches.shape[0]), dtype=current.dtype)
                membrane = np.zeros_like(i_acc)
                i_acc[:, :, positions] = i_act
                membrane[:, :, positions] = u_act
        times.append(t)
        argmins.append(None)
        if trace is not None:
            if stage.kind == "conv":
                i_acc = i_acc.reshape((T,) + stage.shape)
                membrane_map = membrane.reshape((T,) + stage.shape)
            else:
                membrane_map = membrane
            trace.record("forward", l, "I", i_acc)
            trace.record("forward", l, "U", membrane_map)
            trace.record("forward", l, "times", t)
    return times, argmins, membrane


def output_error(net, times, membrane, label: int, trace=None):
    """Decision, targets and the ternary output error d = sign(target - t). Returns (pred, d)."""
    top = len(net.stages) - 1
    out = times[top]
    pred = decide(out, membrane, net.T)
    target, case = targets(out, membrane, label, net.T, net.add, net.neg)
    if net.output_levels == 0:
        d, lvl = sign(target - out), np.zeros(out.shape, np.int64)          # ternary (default)
    else:   # optional: power-of-two output error, the hidden layers' leading-one rule without the clip
        d, lvl = quantize_error(target - out, np.ones(out.shape, np.int64), net.output_levels)
    if trace is not None:
        trace.record("decision", top, "pred", pred)
        trace.record("target", top, "case", case)
        trace.record("target", top, "target", target)
        trace.record("target", top, "d", d)
        if net.output_levels:
            trace.record("target", top, "lvl", lvl)
    return pred, (d, lvl)


def backward(net, times, argmins, d, step: int, trace=None) -> None:
    """Update every weight layer from the output error ``d`` = (sign, lvl) (in place), top layer first.

    Per layer: update with (sign, lvl), then (if a trainable layer lies below) the displacement D
    with the new weights, routed through pooling stages to the hidden layer below, clip rule, and
    power-of-two quantization to that layer's (sign, lvl). Stops as soon as an error is all zero.
    """
    T = net.T
    l = len(net.stages) - 1
    s, lvl = d
    while True:
        stage = net.stages[l]
        t_pre = times[l - 1]
        pre_ok = (t_pre < T) & net.keep_mask(step, l - 1, t_pre.shape)
        want_d = l - 1 > 0
        if stage.kind == "fc":
            (rows, cols, dw), disp = fc_backward(net.w[l], s, lvl, times[l], t_pre.reshape(-1), pre_ok.reshape(-1),
                                                 want_d, T, net.weight_bits, net.step_shift(l))
            block = np.ix_(rows, cols)
            net.w_fwd[l][block] = forward_weights(net.w[l][block], net.forward, net.fwd_shift)
            if trace is not None:
                full = np.zeros(net.w[l].shape, np.int64)
                full[block] = dw
                trace.record("update", l, "dw", full.T)
                trace.record("update", l, "w", net.w[l].T)
        else:
            dw, disp = conv_backward(net.w[l], s, lvl, times[l], t_pre, pre_ok, stage, want_d, T,
                                     net.weight_bits, net.step_shift(l))
            net.w_fwd[l][...] = forward_weights(net.w[l], net.forward, net.fwd_shift)
            if trace is not None:
                trace.record("update", l, "dw", dw.T.reshape(stage.weight_shape))
                trace.record("update", l, "w", net.w[l].T.reshape(stage.weight_shape))
        if not want_d:
            return
        m = l - 1
        disp = disp.reshape(t_pre.shape)
        while net.stages[m].kind == "pool":
            if trace is not None:
                trace.record("error", m, "D", disp)
            disp = unpool(disp, argmins[m], net.stages[m].k, times[m - 1].shape)
            m -= 1
        s, lvl = quantize_error(disp, times[m], net.levels, net.error_norm)
        if trace is not None:
            trace.record("error", m, "D", disp)
            trace.record("error", m, "sign", s)
            trace.record("error", m, "lvl", lvl)
        if not s.any():
            return
        l = m


def train_step(net, t0, label: int, step: int, trace=None) -> int:
    """Train on one encoded sample; returns the strict prediction made before the update."""
    if trace is not None:
        trace.record("encode", 0, "times", t0)
    times, argmins, membrane = forward(net, t0, trace)
    pred, d = output_error(net, times, membrane, label, trace)
    if d[0].any():
        backward(net, times, argmins, d, step, trace)
    return pred


def predict_one(net, t0) -> int:
    times, _, membrane = forward(net, t0)
    return decide(times[-1], membrane, net.T)
