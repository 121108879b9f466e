"""STiDi-BP float reference: L2-normalized spike-time errors, real or binarized forward weights.

Semantics of the authors' code (notes sections 3-7) with the project's choices: pure ramp PSP
``eps(s) = s / tau1`` (tau1 >= T), threshold ``V >= theta``, silent = T, relative output targets,
``delta = e / ||e||``, hidden displacement from the *updated* latent weights, normalize -> target ->
clip to [0, T+1] -> renormalize, derivative dt/dV = -1 in every layer (the conv code's
``t * alpha / theta`` latency factor is not modelled). Binarized: forward ``sign(w)`` with
``sign(0) = +1`` and threshold ``theta * tau1 / alpha`` on U = sum sign(w) (t - t_i); alpha is a
per-layer scale, learned with the BS4NN rule when ``scale_lr > 0``.

The forward pass reuses the integer accumulate-current functions (exact for integer U; for real
weights the cumulative sums round like any float sum).
"""

import numpy as np

from . import stidi_fixed as fx


def forward_weights(w, forward: str) -> np.ndarray:
    if forward == "binary":
        return np.where(w >= 0, 1.0, -1.0)
    return w                                   # real: the latent weights themselves (shared array)


def normalize(x):
    norm = float(np.sqrt(np.sum(np.square(x))))
    return x / norm if norm > 0 else np.zeros_like(x, dtype=np.float64)


def output_delta(net, times, membrane, label: int, trace=None):
    top = len(net.stages) - 1
    out = times[top]
    pred = fx.decide(out, membrane, net.T)
    target, case = fx.targets(out, membrane, label, net.T, net.add, net.neg)
    delta = normalize((target - out) / net.T)
    if trace is not None:
        trace.record("decision", top, "pred", pred)
        trace.record("target", top, "case", case)
        trace.record("target", top, "target", target)
        trace.record("target", top, "delta", delta)
    return pred, delta


def hidden_delta(displacement, times, T: int):
    """normalize -> target t + dt clipped to [0, T+1] -> renormalize (notes section 5)."""
    dt = normalize(displacement)
    target = np.clip(times + dt, 0, T + 1)
    return normalize(np.where(times < T, target - times, 0.0))


def fc_backward(w, delta, t_post, t_pre, pre_ok, lr: float, tau1: float, want_d: bool):
    """Returns (rows, cols, mask, dt or None); ``w`` (N_in, N_out) updated in place."""
    cols = np.flatnonzero(delta)
    rows = np.flatnonzero(pre_ok)
    t_k = t_post[cols][None, :].astype(np.float64)
    t_j = t_pre[rows][:, None].astype(np.float64)
    mask = (t_j <= t_k) & (t_k <= t_j + tau1)
    block = np.ix_(rows, cols)
    w[block] -= lr * delta[cols][None, :] * np.where(mask, (t_k - t_j) / tau1, 0.0)
    dt = None
    if want_d:
        dt = np.zeros(len(t_pre))
        dt[rows] = (np.where(mask, w[block], 0.0) * delta[cols][None, :]).sum(axis=1) / tau1
    return rows, cols, mask, dt


def conv_backward(w, delta, t_post, t_pre, pre_ok, stage, lr: float, tau1: float, want_d: bool, T: int):
    """Returns (co, index, mask, dt or None); ``w`` (K, Cout) updated in place (sum over positions)."""
    cout = w.shape[1]
    co, pos = np.nonzero(delta.reshape(cout, -1))
    d = delta.reshape(cout, -1)[co, pos][:, None]
    padded = np.full(stage.padded_size, T, dtype=np.int64)
    padded[stage.interior] = np.where(pre_ok, t_pre, T).reshape(-1)
    index = stage.patches[pos]
    taps = padded[index].astype(np.float64)
    t_k = t_post.reshape(cout, -1)[co, pos][:, None].astype(np.float64)
    mask = (taps < T) & (taps <= t_k) & (t_k <= taps + tau1)
    grad = d * np.where(mask, (t_k - taps) / tau1, 0.0)
    total = np.zeros_like(w)
    np.add.at(total.T, co, grad)
    w -= lr * total
    dt = None
    if want_d:
        term = np.where(mask, w[:, co].T, 0.0) * d / tau1
        flat = np.bincount(index.reshape(-1), weights=term.reshape(-1), minlength=stage.padded_size)
        dt = flat[stage.interior].reshape(t_pre.shape)
    return co, index, mask, dt


def backward(net, times, argmins, delta, step: int, trace=None) -> None:
    T = net.T
    l = len(net.stages) - 1
    while True:
        stage = net.stages[l]
        t_pre = times[l - 1]
        pre_ok = (t_pre < T) & net.keep_mask(step, l - 1, t_pre.shape)
        want_d = l - 1 > 0
        before = net.w[l].copy() if trace is not None else None
        if stage.kind == "fc":
            rows, cols, mask, dt = fc_backward(net.w[l], delta, times[l], t_pre.reshape(-1), pre_ok.reshape(-1),
                                               net.step_lr(l), net.tau1, want_d)
            if net.forward == "binary":
                block = np.ix_(rows, cols)
                net.w_fwd[l][block] = forward_weights(net.w[l][block], "binary")
                if net.scale_lr > 0:   # BS4NN: alpha -= lrF * mean(delta * [t_pre < t_post] * sign(w_new))
                    strict = t_pre.reshape(-1)[rows][:, None] < times[l][cols][None, :]
                    g = (np.where(strict, net.w_fwd[l][block], 0.0) * delta[cols][None, :]).sum()
                    net.alpha[l] = max(net.alpha[l] - net.scale_lr * g / net.w[l].size, 1e-3)
        else:
            co, index, mask, dt = conv_backward(net.w[l], delta, times[l], t_pre, pre_ok, stage, net.step_lr(l),
                                                net.tau1, want_d, T)
            if net.forward == "binary":
                net.w_fwd[l][...] = forward_weights(net.w[l], "binary")
        if trace is not None:
            shape = stage.weight_shape
            trace.record("update", l, "dw", (net.w[l] - before).T.reshape(shape))
            trace.record("update", l, "w", net.w[l].T.reshape(shape))
            if net.forward == "binary":
                trace.record("update", l, "alpha", net.alpha[l])
        if not want_d:
            return
        m = l - 1
        disp = dt.reshape(t_pre.shape)
        while net.stages[m].kind == "pool":
            if trace is not None:
                trace.record("error", m, "D", disp)
            disp = fx.unpool(disp, argmins[m], net.stages[m].k, times[m - 1].shape)
            m -= 1
        delta = hidden_delta(disp, times[m].astype(np.float64), T)
        if trace is not None:
            trace.record("error", m, "D", disp)
            trace.record("error", m, "delta", delta)
        if not delta.any():
            return
        l = m


def train_step(net, t0, label: int, step: int, trace=None) -> int:
    if trace is not None:
        trace.record("encode", 0, "times", t0)
    times, argmins, membrane = fx.forward(net, t0, trace)
    pred, delta = output_delta(net, times, membrane, label, trace)
    if delta.any():
        backward(net, times, argmins, delta, step, trace)
    return pred
