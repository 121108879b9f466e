"""STiDi-BP conv layers and min-time pooling: hand cases and loop references written from the spec."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfsnn.golden import stidi
from mfsnn.golden import stidi_fixed as fx

T = 101
HYP = settings(max_examples=40, deadline=None, derandomize=True)


def conv_stage(cin, side, k, cout):
    topo = stidi.StidiTopology("test", 196, (cin, side, side), (("conv", k, cout), ("fc", 2)))
    return stidi.build_stages(topo)[1]


def conv_forward(t_in, w_internal, stage, theta):
    """Full-map (U (T, Cout, P), times (Cout, P)) from the event-driven conv of the active positions."""
    current, positions = fx.conv_currents(t_in, w_internal, stage, T)
    _, u_act, t_act = fx.integrate(current, theta, T)
    cout, n_pos = w_internal.shape[1], stage.patches.shape[0]
    u = np.zeros((T, cout, n_pos), np.int64)
    u[:, :, positions] = u_act
    times = np.full((cout, n_pos), T)
    times[:, positions] = t_act
    return u, times


def direct_conv_membrane(t_in, w):
    """U[t, co, y, x] = sum w[co,ci,ky,kx] * (t - t_in[ci, y+ky-p, x+kx-p]) over in-map taps with t_in < t."""
    cout, cin, k, _ = w.shape
    _, h, wd = t_in.shape
    p = k // 2
    u = np.zeros((T, cout, h, wd), np.int64)
    for co in range(cout):
        for y in range(h):
            for x in range(wd):
                for ci in range(cin):
                    for ky in range(k):
                        for kx in range(k):
                            yy, xx = y + ky - p, x + kx - p
                            if 0 <= yy < h and 0 <= xx < wd:
                                ti = t_in[ci, yy, xx]
                                for t in range(ti + 1, T):
                                    u[t, co, y, x] += w[co, ci, ky, kx] * (t - ti)
    return u


@HYP
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 3]), st.integers(1, 2), st.integers(1, 3))
def test_conv_accumulate_current_equals_direct_sum(seed, k, cin, cout):
    rng = np.random.default_rng(seed)
    stage = conv_stage(cin, 5, k, cout)
    t_in = rng.integers(0, T + 1, (cin, 5, 5))
    w = rng.choice([-1, 1], (cout, cin, k, k))
    theta = int(rng.integers(1, 200))
    u, times = conv_forward(t_in, w.reshape(cout, -1).T.astype(np.int64), stage, theta)
    want = direct_conv_membrane(t_in, w)
    assert np.array_equal(u.reshape(want.shape), want)
    crossed = want >= theta
    want_t = np.where(crossed.any(0), crossed.argmax(0), T)
    assert np.array_equal(times.reshape(cout, 5, 5), want_t)


def test_conv_zero_padding_is_a_silent_input():
    stage = conv_stage(1, 5, 3, 1)
    t_in = np.full((1, 5, 5), T)
    t_in[0, 0, 0] = 0                                    # one spike in the corner
    _, times = conv_forward(t_in, np.ones((9, 1), np.int64), stage, 10)
    times = times.reshape(1, 5, 5)
    # the corner spike reaches the 2x2 neighbourhood (0..1, 0..1) only; U = t there
    assert times[0, :2, :2].tolist() == [[10, 10], [10, 10]]
    assert (times[0, 2:, :] == T).all() and (times[0, :, 2:] == T).all()


def test_min_pool_ties_go_to_the_first_row_major_position():
    t = np.array([[[5, 3, 9, 9],
                   [3, 7, 9, 9],
                   [1, 1, T, T],
                   [1, 1, T, T]]])
    pooled, arg = fx.min_pool(t, 2, (1, 2, 2))
    assert pooled.tolist() == [[[3, 9], [1, T]]]
    assert arg.tolist() == [[[1, 0], [0, 0]]]            # (0,1) before (1,0); all-equal -> first


def test_unpool_routes_to_the_argmin_only():
    d = np.array([[[7, -2], [0, 5]]])
    arg = np.array([[[1, 3], [0, 2]]])
    out = fx.unpool(d, arg, 2, (1, 4, 4))
    assert out.tolist() == [[[0, 7, 0, 0],
                             [0, 0, 0, -2],
                             [0, 0, 0, 0],
                             [0, 0, 5, 0]]]


def reference_conv_backward(w, s, lvl, t_post, t_pre, pre_ok, bits, want_d=True):
    """Loops over the spec: per weight the sum over posts, one saturation; D with the new weights."""
    cout, cin, k, _ = w.shape
    _, h, wd = t_post.shape
    p = k // 2
    total = np.zeros_like(w)
    hits = []
    for co in range(cout):
        for y in range(h):
            for x in range(wd):
                if s[co, y, x] == 0:
                    continue
                for ci in range(cin):
                    for ky in range(k):
                        for kx in range(k):
                            yy, xx = y + ky - p, x + kx - p
                            if not (0 <= yy < h and 0 <= xx < wd) or not pre_ok[ci, yy, xx]:
                                continue
                            if t_pre[ci, yy, xx] <= t_post[co, y, x]:
                                step = (t_post[co, y, x] - t_pre[ci, yy, xx]) << lvl[co, y, x]
                                total[co, ci, ky, kx] += step if s[co, y, x] > 0 else -step
                                hits.append((co, y, x, ci, ky, kx, yy, xx))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    new = np.clip(w - total, lo, hi)
    d = np.zeros(t_pre.shape, np.int64)
    for co, y, x, ci, ky, kx, yy, xx in hits:
        term = int(new[co, ci, ky, kx]) << int(lvl[co, y, x])
        d[ci, yy, xx] += term if s[co, y, x] > 0 else -term
    return new, d


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_conv_backward_matches_loop_reference(seed):
    rng = np.random.default_rng(seed)
    cin, cout, k, side, bits = 2, 3, 3, 6, 10
    stage = conv_stage(cin, side, k, cout)
    w = rng.integers(-500, 500, (cout, cin, k, k))
    s = rng.choice([-1, 0, 0, 1], (cout, side, side))
    lvl = np.where(s != 0, rng.integers(0, 4, s.shape), 0)
    t_post = rng.integers(0, T, (cout, side, side))
    t_pre = rng.integers(0, T + 1, (cin, side, side))
    pre_ok = (t_pre < T) & (rng.random(t_pre.shape) < 0.9)
    want_w, want_d = reference_conv_backward(w, s, lvl, t_post, t_pre, pre_ok, bits)
    internal = w.reshape(cout, -1).T.copy()
    dw, d = fx.conv_backward(internal, s, lvl, t_post, t_pre, pre_ok, stage, True, T, bits, 0)
    assert np.array_equal(internal.T.reshape(w.shape), want_w)
    assert np.array_equal(dw.T.reshape(w.shape), want_w - w)
    assert np.array_equal(d, want_d)
    assert (want_w == (1 << (bits - 1)) - 1).any() or (want_w == -(1 << (bits - 1))).any()   # saturation hit


def test_conv_network_learns_and_traces():
    from mfsnn.golden.data import load_dataset
    data = load_dataset("builtin")
    learner = stidi.make_stidi_learner("fixed", "14x14-c3x4-p2-10", seed=9)
    trace = stidi.record_stidi_trace(learner, data.train.images[0], int(data.train.labels[0]), 0, 0)
    for key in ["encode/0/times", "forward/1/U", "forward/2/argmin", "forward/3/times", "target/3/target",
                "update/3/w", "error/2/D", "error/1/D", "error/1/sign", "error/1/lvl", "update/1/w"]:
        assert key in trace, key
    assert trace["forward/1/U"].shape == (T, 4, 14, 14) and trace["update/1/w"].shape == (4, 1, 3, 3)
    learner.train_samples(data.train.images, data.train.labels, 0, 0)
    acc = (learner.predict(data.test.images[:500]) == data.test.labels[:500]).mean()
    assert acc > 0.3, acc                                 # chance 0.1


def test_float_conv_runs_and_saves():
    from mfsnn.golden.data import load_dataset
    data = load_dataset("builtin")
    a = stidi.make_stidi_learner("float", "14x14-c3x4-p2-10", seed=9)
    a.train_samples(data.train.images[:50], data.train.labels[:50], 0, 0)
    b = stidi.stidi_learner_from_saved(a.settings(), a.weight_arrays())
    assert np.array_equal(a.predict(data.test.images[:30]), b.predict(data.test.images[:30]))
