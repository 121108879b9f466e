"""STiDi-BP golden model: hand-computed cases from docs/golden-spec-stidi.md, PRNG vectors,
property tests, learning and determinism. Conv/pooling cases are in test_stidi_conv.py."""

import hashlib
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfsnn.golden import stidi
from mfsnn.golden import stidi_fixed as fx
from mfsnn.golden.hashing import xorshift32
from mfsnn.golden.trace import Trace, first_divergence

T = 101
SILENT = T
HYP = settings(max_examples=60, deadline=None, derandomize=True)


def builtin():
    from mfsnn.golden.data import load_dataset
    return load_dataset("builtin")


# ------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------

def test_encoding_edges_and_notes_vectors():
    table = stidi.encoding_table(T)
    assert table[0] == 100 and table[255] == 0          # background is the last step, full white is 0
    pixels = [0, 1, 2, 3, 51, 128, 200, 254, 255]
    assert table[pixels].tolist() == [100, 99, 99, 98, 80, 49, 21, 0, 0]


def test_encoding_equals_floor_of_the_reference_formula_for_every_pixel():
    table = stidi.encoding_table(T)
    for p in range(256):
        want = math.floor(Fraction(100) - Fraction(100 * p, 255))     # t = floor(Tend - Tend * p / 255)
        assert table[p] == want, p


# ------------------------------------------------------------------------------------------------
# Forward: accumulate-current == direct ramp sum
# ------------------------------------------------------------------------------------------------

def direct_membrane(t_in, w, steps=T):
    """U_j(t) = sum_{i: t_i < t} w_ij * (t - t_i), the reference ramp-PSP sum (multiplies allowed here)."""
    u = np.zeros((steps, w.shape[1]), dtype=np.int64)
    for t in range(steps):
        for i, ti in enumerate(t_in):
            if ti < t:
                u[t] += w[i] * (t - ti)
    return u


def stepwise_times(t_in, w, theta, steps=T):
    """Scalar per-step simulation: U += I; fire on first U >= theta; then I += arrivals at t."""
    n = w.shape[1]
    current = [0] * n
    membrane = [0] * n
    times = [steps] * n
    for t in range(steps):
        for j in range(n):
            membrane[j] += current[j]
            if times[j] == steps and membrane[j] >= theta:
                times[j] = t
        for i, ti in enumerate(t_in):
            if ti == t:
                for j in range(n):
                    current[j] += int(w[i, j])
    return times


@HYP
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 5), st.booleans())
def test_accumulate_current_equals_direct_sum(seed, n_in, n_out, binary):
    rng = np.random.default_rng(seed)
    t_in = rng.integers(0, T + 1, n_in)                        # includes T-1 and silent T
    w = rng.choice([-1, 1], (n_in, n_out)) if binary else rng.integers(-50, 51, (n_in, n_out))
    theta = int(rng.integers(1, 300))
    _, membrane, times = fx.integrate(fx.fc_currents(t_in, w.astype(np.int64), T), theta, T)
    assert np.array_equal(membrane, direct_membrane(t_in, w))
    assert times.tolist() == stepwise_times(t_in, w, theta)


def test_first_crossing_at_the_window_edge_and_silence():
    w = np.ones((1, 1), np.int64)
    t_in = np.array([0])                                   # U(t) = t
    assert fx.integrate(fx.fc_currents(t_in, w, T), 100, T)[2].tolist() == [100]    # crosses at t = T-1
    assert fx.integrate(fx.fc_currents(t_in, w, T), 101, T)[2].tolist() == [SILENT]
    # eps(0) = 0: a spike at t = 5 first contributes at t = 6
    assert fx.integrate(fx.fc_currents(np.array([5]), w, T), 1, T)[2].tolist() == [6]
    # a spike at T-1 (pixel 0) and a silent input never change the membrane
    _, u, times = fx.integrate(fx.fc_currents(np.array([100, 101]), np.ones((2, 1), np.int64), T), 1, T)
    assert not u.any() and times.tolist() == [SILENT]


def test_negative_current_delays_crossing():
    # inputs at 0 (+1, +1) and 10 (-1): U(t) = 2t up to 10, then 2t - (t - 10) = t + 10
    w = np.array([[1], [1], [-1]], np.int64)
    times = fx.integrate(fx.fc_currents(np.array([0, 0, 10]), w, T), 30, T)[2]
    assert times.tolist() == [20]                           # 2*10 = 20 < 30; t + 10 >= 30 at t = 20


# ------------------------------------------------------------------------------------------------
# Decision and targets (every branch by hand)
# ------------------------------------------------------------------------------------------------

def membrane_with(rows: dict, n=3):
    u = np.zeros((T, n), np.int64)
    for t, values in rows.items():
        u[t] = values
    return u


def test_decision_strict_rule():
    u = membrane_with({20: [150, 160, 10], 100: [1, 5, 5]})
    assert fx.decide(np.array([20, 20, 40]), u, T) == 1           # tie -> larger U at that step
    u = membrane_with({20: [160, 160, 10]})
    assert fx.decide(np.array([20, 20, 40]), u, T) == 0           # equal U -> lowest index
    assert fx.decide(np.array([30, 20, 20]), membrane_with({20: [0, 7, 9]}), T) == 2
    assert fx.decide(np.array([SILENT] * 3), membrane_with({100: [1, 5, 5]}), T) == 1   # argmax U(T-1), lowest


def test_decision_tie_ignores_larger_u_of_later_neurons():
    u = membrane_with({20: [150, 100, 999]})
    assert fx.decide(np.array([20, 20, 40]), u, T) == 0


def test_early_exit_steps_by_hand():
    # blocks of 2: block 0 fires first at 30 (horizon 30), block 1 at 20 (horizon 20), block 2 would
    # fire at 25 but stops at 20, block 3 (one neuron) is silent and runs to 20 too
    times = np.array([40, 30, 20, SILENT, 25, 50, SILENT])
    assert fx.early_exit_steps(times, T, 2).tolist() == [30, 30, 20, 20, 20, 20, 20]
    assert fx.early_exit_steps(times, T, 1).tolist() == [40, 30, 20, 20, 20, 20, 20]
    assert fx.early_exit_steps(times, T, 8).tolist() == [20] * 7
    assert fx.early_exit_steps(np.array([SILENT] * 3), T, 2).tolist() == [T - 1] * 3   # nothing fires
    assert fx.early_exit_times(times, T).tolist() == [SILENT, SILENT, 20, SILENT, SILENT, SILENT, SILENT]
    assert fx.early_exit_times(np.array([7, 9, 7]), T).tolist() == [7, SILENT, 7]
    with pytest.raises(ValueError, match="block"):
        fx.early_exit_steps(times, T, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_early_exit_decides_as_the_full_forward(seed):
    """§7: the class from the early-exit times and only the membrane rows an early exit computes (the
    others replaced by values that would win) is the class of the full forward, for random times with
    many ties and random U, at every block size."""
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        times = rng.choice([3, 4, 5, SILENT], size=n) if rng.random() < 0.5 else rng.integers(0, T + 1, size=n)
        u = rng.integers(-50, 50, size=(T, n))
        want = fx.decide(times, u, T)
        for block in (1, 2, 3, 4, 16):
            last = fx.early_exit_steps(times, T, block)
            computed = np.arange(T)[:, None] <= last[None, :]
            seen = np.where(times <= last, times, SILENT)
            assert np.all(last >= min(int(times.min()), T - 1))
            assert fx.decide(seen, np.where(computed, u, 10_000), T) == want
            assert fx.decide(fx.early_exit_times(seen, T), np.where(computed, u, 10_000), T) == want


@pytest.mark.parametrize("times, label, u_rows, want, case", [
    ([SILENT] * 3, 1, {}, [SILENT, 86, SILENT], 1),                      # nothing fired
    ([20, 30, 40], 0, {}, [20, 30, 40], 2),                               # correct unique winner
    ([20, 20, 40], 0, {}, [5, 35, 40], 3),                                # correct but tied
    ([20, 20, 40], 1, {}, [35, 5, 40], 4),                                # wrong, label tied first
    ([30, 30, 30], 2, {}, [45, 45, 15], 4),                               # wrong, all equal (m == M)
    ([20, 30, 40], 1, {}, [35, 5, 40], 5),                                # wrong winner pushed to m + add
    ([20, 25, 30], 2, {}, [30, 25, 5], 5),                                # ... capped at M
    ([20, 20, 40], 2, {20: [150, 160, 0]}, [20, 35, 5], 5),               # only vwin (larger U) pushed
    ([10, 20, 40], 1, {}, [25, 0, 40], 5),                                # label target floored at 0
    ([95, 95, SILENT], 0, {}, [80, SILENT, SILENT], 3),                   # m + add capped at T
    ([40, SILENT, SILENT], 1, {}, [55, 25, SILENT], 5),                   # M = T (silent) allowed
])
def test_targets_every_branch(times, label, u_rows, want, case):
    target, got_case = fx.targets(np.array(times), membrane_with(u_rows), label, T, 15, 15)
    assert (target.tolist(), got_case) == (want, case)


# ------------------------------------------------------------------------------------------------
# Error quantization, updates, saturation
# ------------------------------------------------------------------------------------------------

def test_leading_one_quantization():
    d = np.array([0, 1, -2, 3, 100, -128, 17, 64])
    s, lvl = fx.quantize_error(d, np.full(8, 50), 3)
    # emax = msb(128) = 7; lvl = msb(|D|) - 7 + 3: 1,2,3 -> < 0 (dropped); 100 -> 2; 128 -> 3; 17 -> 0; 64 -> 2
    assert s.tolist() == [0, 0, 0, 0, 1, -1, 1, 1]
    assert lvl.tolist() == [0, 0, 0, 0, 2, 3, 0, 2]


def test_clip_rule_applies_before_the_maximum():
    s, lvl = fx.quantize_error(np.array([-128, 16, -4]), np.array([0, 5, 7]), 3)
    # D[0] < 0 at t == 0 is cleared, so emax = msb(16) = 4: 16 -> 3, 4 -> 1
    assert s.tolist() == [0, 1, -1] and lvl.tolist() == [0, 3, 1]
    assert [a.tolist() for a in fx.quantize_error(np.zeros(3, np.int64), np.zeros(3), 3)] == [[0] * 3, [0] * 3]


@pytest.mark.parametrize("n_equal,shift", [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (15, 1), (16, 2), (64, 3)])
def test_l2_shift_is_floor_log2_of_the_norm_for_equal_errors(n_equal, shift):
    # ||(x, ..., x)||_2 = x * sqrt(n): the shift is floor(log2 sqrt(n)), computed by hand
    assert fx.l2_shift(np.zeros(n_equal, np.int64)) == shift


def test_l2_quantization_by_hand():
    # msb: 100 -> 6, 3 -> 1, 17 -> 4; offsets 0, -5, -2. S = 4**8 + 4**3 + 4**6 = 69696, msb 16 -> r = 8 - 8 = 0
    s, lvl = fx.quantize_error(np.array([100, -3, 0, 17]), np.full(4, 50), 3, norm="l2")
    assert s.tolist() == [1, 0, 0, 1] and lvl.tolist() == [3, 0, 0, 1]
    # four equal errors: ||D|| = 2 * 64, r = 1, every level drops by one against norm="max"
    s, lvl = fx.quantize_error(np.array([64, -64, 64, 64]), np.full(4, 50), 3, norm="l2")
    assert s.tolist() == [1, -1, 1, 1] and lvl.tolist() == [2, 2, 2, 2]
    assert fx.quantize_error(np.array([64, -64, 64, 64]), np.full(4, 50), 3)[1].tolist() == [3, 3, 3, 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-8, 0), min_size=1, max_size=300).map(lambda xs: [0] + xs))
def test_l2_shift_brackets_the_squared_norm(offsets):
    # r is defined by 4**r <= sum 4**offset < 4**(r + 1), i.e. 2**r <= ||D|| / 2**emax < 2**(r + 1)
    r = fx.l2_shift(np.array(offsets, np.int64))
    total = sum(Fraction(4) ** o for o in offsets)
    assert Fraction(4) ** r <= total < Fraction(4) ** (r + 1)


def test_l2_norm_ignores_errors_below_the_guard():
    # 1 is 2**-20 of the largest error: below 2**-NORM_GUARD it does not count towards the norm
    assert fx.NORM_GUARD == 8
    assert fx.l2_shift(np.array([0, -20, -20, -20, -20])) == 0
    assert fx.l2_shift(np.array([0, -8, -8, -8, -8])) == 0          # S = 4**8 + 4: msb still 16
    assert fx.l2_shift(np.zeros(4, np.int64) - 1) == 0              # offsets -1 only: S = 4 * 4**7 = 2**16


def test_output_update_and_displacement_by_hand():
    w = np.array([[100, 200], [300, -400], [7, 7]], np.int64)   # (N_in=3, N_out=2)
    t_pre = np.array([0, 10, SILENT])
    t_post = np.array([20, SILENT])
    s = np.array([1, -1])
    (rows, cols, dw), d = fx.fc_backward(w, s, np.zeros(2, np.int64), t_post, t_pre, t_pre < T, True, T, 16, 0)
    # k=0 (s=+1): w[j,0] -= t_k - t_j: 100-20=80, 300-10=290; k=1 (silent, s=-1): w += 101-t_j: 301, -309
    assert w.tolist() == [[80, 301], [290, -309], [7, 7]]
    # D_j = sum_k s_k * w_new[j,k] = w[j,0] - w[j,1]; silent pre j=2 gets nothing
    assert d.tolist() == [80 - 301, 290 + 309, 0]
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]


def test_pre_after_post_is_not_updated_and_equal_times_count_for_displacement():
    w = np.full((2, 1), 10, np.int64)
    (_, _, _), d = fx.fc_backward(w, np.array([-1]), np.zeros(1, np.int64), np.array([30]), np.array([30, 31]),
                                  np.array([True, True]), True, T, 16, 0)
    assert w[:, 0].tolist() == [10, 10]              # t_k - t_j = 0 for j=0; j=1 fired after k: masked
    assert d.tolist() == [-10, 0]


def test_hidden_update_shifts_and_saturates():
    w = np.array([[32760, -32760], [0, 0]], np.int64)             # (N_in=2, N_out=2), 16-bit
    t_pre = np.array([0, 40])
    s, lvl = np.array([-1, 1]), np.array([3, 2])
    fx.fc_backward(w, s, lvl, np.array([50, 50]), t_pre, np.array([True, True]), False, T, 16, 0)
    # j=0: k=0 += 50 << 3 = 400 -> saturates at 32767; k=1 -= 50 << 2 = 200 -> -32768
    # j=1: k=0 += 10 << 3 = 80; k=1 -= 10 << 2 = 40
    assert w.tolist() == [[32767, -32768], [80, -40]]


def test_learning_rate_shift_rounds_half_up_in_magnitude():
    w = np.zeros((3, 1), np.int64)
    fx.fc_backward(w, np.array([1]), np.array([0]), np.array([13]), np.array([0, 1, 2]),
                   np.ones(3, bool), False, T, 16, 3)
    # steps 13, 12, 11 >> 3 with rounding: (13+4)>>3 = 2, (12+4)>>3 = 2, (11+4)>>3 = 1
    assert w[:, 0].tolist() == [-2, -2, -1]


def test_forward_weights_sign_of_zero_is_plus_one():
    w = np.array([-5, -1, 0, 1, 7000])
    assert fx.forward_weights(w, "binary", 10).tolist() == [-1, -1, 1, 1, 1]
    assert fx.forward_weights(np.array([-1025, -1, 1023, 1024]), "real", 10).tolist() == [-2, -1, 0, 1]


# ------------------------------------------------------------------------------------------------
# PRNG, init and shuffle vectors (notes 10.4 / 10.8)
# ------------------------------------------------------------------------------------------------

def test_xorshift32_vectors():
    x = 0x2545F491
    outs = []
    for _ in range(3):
        x = xorshift32(x)
        outs.append(x)
    assert outs == [0xE124B63A, 0x8B9A74AB, 0x64E1B3AC]
    assert stidi.xorshift_stream(0x2545F491, 3)[0].tolist() == outs


#: The notes' prototype (section 10.3): max-scaled hidden error, Q = 3, INIT_BITS = (14, 13).
NOTES_PROTOTYPE = dict(levels=3, error_norm="max", init_bits=(14, 13))


def test_init_and_shuffle_vectors():
    cfg = stidi.StidiConfig(topology="784-128-10", **NOTES_PROTOTYPE)
    stages = stidi.build_stages(stidi.parse_stidi_topology(cfg.topology))
    weights, state = stidi.init_weights(cfg, stages)
    w1, w2 = weights[1], weights[2]
    assert w1.shape == (128, 784) and w2.shape == (10, 128)
    assert w1[0, :4].tolist() == [14409, 8934, 6456, 5]
    assert w1[127, 780:].tolist() == [910, 4060, 11064, 3698]
    assert w2[0, :4].tolist() == [4494, 7671, 2318, 1377]
    assert w2[9, 124:].tolist() == [5784, 3075, 5873, 7982]
    assert state == 0xF9744542
    perm, _ = stidi.fisher_yates(60000, state)
    assert perm[:8].tolist() == [28658, 55647, 22711, 49442, 18004, 30381, 36836, 38021]
    assert np.array_equal(np.sort(perm), np.arange(60000))


def test_below_is_uniform_rejection_sampling():
    values = set()
    state = 1
    for _ in range(200):
        r, state = stidi.below(state, 5)
        values.add(r)
    assert values == {0, 1, 2, 3, 4}


def test_dropout_mask_is_a_pure_function_of_step():
    learner = stidi.make_stidi_learner("fixed", "196-64-10", seed=7, drop8=64)
    a = learner.keep_mask(12, 1, (64,))
    assert np.array_equal(a, learner.keep_mask(12, 1, (64,)))
    assert not np.array_equal(a, learner.keep_mask(13, 1, (64,)))
    assert learner.keep_mask(12, 0, (196,)).all()                 # never on the input
    assert 0.1 < 1 - a.mean() < 0.45                             # ~64/256 dropped


# ------------------------------------------------------------------------------------------------
# Prototype cross-check on the first MNIST training images (built-in subset = MNIST train[:3000])
# ------------------------------------------------------------------------------------------------

def test_notes_prototype_vectors_on_mnist_train_0_to_99():
    data = builtin()
    learner = stidi.make_stidi_learner("fixed", "784-128-10", seed=0x2545F491, **NOTES_PROTOTYPE)
    t0 = learner.encode(data.train.images[:1])[0]
    assert int((t0 < 100).sum()) == 166 and data.train.labels[0] == 5
    times, _, membrane = fx.forward(learner, t0)
    assert set(times[1].tolist()) == {16} and times[2].tolist() == [18] * 10
    assert fx.decide(times[2], membrane, T) == 0
    learner.train_samples(data.train.images[:100], data.train.labels[:100], 0, 0)
    w = learner.weight_arrays()
    assert int(w["w1"].sum()) == 749_374_669 and int(w["w2"].sum()) == 5_042_058
    assert hashlib.sha256(w["w1"].astype("<i8").tobytes()).hexdigest()[:16] == "50e039cf0d0a72b6"
    assert hashlib.sha256(w["w2"].astype("<i8").tobytes()).hexdigest()[:16] == "d3b2b5fd50f7301d"


# ------------------------------------------------------------------------------------------------
# Topology syntax
# ------------------------------------------------------------------------------------------------

def test_topology_parsing():
    topo = stidi.parse_stidi_topology("784-128-10")
    assert topo.input_shape == (784,) and topo.layers == (("fc", 128), ("fc", 10)) and not topo.is_conv
    topo = stidi.parse_stidi_topology("28x28-c5x8-p2-c5x16-p2-10")
    assert topo.layers == (("conv", 5, 8), ("pool", 2), ("conv", 5, 16), ("pool", 2), ("fc", 10))
    stages = stidi.build_stages(topo)
    assert [s.shape for s in stages] == [(1, 28, 28), (8, 28, 28), (8, 14, 14), (16, 14, 14), (16, 7, 7), (10,)]
    assert stages[3].weight_shape == (16, 8, 5, 5) and stages[5].weight_shape == (10, 784)
    topo = stidi.parse_stidi_topology("14x14-c3x4-p7-10")
    assert topo.n_pixels == 196 and topo.input_shape == (1, 14, 14)


@pytest.mark.parametrize("text, token", [
    ("784-c5x8-10", "c5x8"), ("28x28-c4x8-10", "c4x8"), ("28x28-p3-10", "p3"), ("0-10", "0"),
    ("784-128-x", "x"), ("28x28-c5x8", "c5x8"), ("784-128-1", "1"), ("28x28-10-p2-10", "p2"),
])
def test_topology_errors_name_the_token_and_the_syntax(text, token):
    with pytest.raises(ValueError) as error:
        stidi.parse_stidi_topology(text)
    assert f"bad token {token!r}" in str(error.value) and "c<k>x<channels>" in str(error.value)


# ------------------------------------------------------------------------------------------------
# Float reference vs integer model
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_float_binary_forward_equals_integer_forward(seed):
    fixed = stidi.make_stidi_learner("fixed", "196-32-10", seed=seed, thresholds=(300, 40))
    flt = stidi.make_stidi_learner("float", "196-32-10", seed=seed, thresholds=(300, 40))
    rng = np.random.default_rng(seed)
    for l in (1, 2):                           # random signed latent weights, the same signs in both
        w = rng.integers(-100, 300, fixed.w[l].shape)
        fixed.w[l][...] = w
        flt.w[l][...] = w.astype(np.float64) / 7.0
        fixed.w_fwd[l][...] = fx.forward_weights(fixed.w[l], "binary", 0)
        flt.w_fwd[l][...] = np.where(flt.w[l] >= 0, 1.0, -1.0)
    images = builtin().test.images[:40]
    for t0 in fixed.encode(images):
        a, _, ua = fx.forward(fixed, t0)
        b, _, ub = fx.forward(flt, t0)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert np.array_equal(ua, ub)
    assert np.array_equal(fixed.predict(images), flt.predict(images))


def test_learning_beats_chance_and_float_integer_agree():
    data = builtin()
    accs = {}
    for arith in ("fixed", "float"):
        learner = stidi.make_stidi_learner(arith, "784-128-10", seed=1)
        learner.train_samples(data.train.images, data.train.labels, 0, 0)
        accs[arith] = float((learner.predict(data.test.images) == data.test.labels).mean())
    print(accs)
    # measured at the time of writing: fixed 0.569, float 0.695 (3000 samples, 1000 test; chance 0.1)
    assert accs["fixed"] > 0.45 and accs["float"] > 0.45
    assert abs(accs["fixed"] - accs["float"]) < 0.2


def test_real_forward_learns():
    data = builtin()
    learner = stidi.make_stidi_learner("float", "784-128-10", seed=1, forward="real")
    learner.train_samples(data.train.images[:2000], data.train.labels[:2000], 0, 0)
    assert (learner.predict(data.test.images) == data.test.labels).mean() > 0.5


# ------------------------------------------------------------------------------------------------
# Determinism, save/restore, traces
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arith", ["fixed", "float"])
def test_determinism_and_save_restore(arith):
    data = builtin()
    images, labels = data.train.images[:300], data.train.labels[:300]
    a = stidi.make_stidi_learner(arith, "196-32-10", seed=5, drop8=40)
    b = stidi.make_stidi_learner(arith, "196-32-10", seed=5, drop8=40)
    ca = a.train_samples(images[:200], labels[:200], 0, 0)
    cb = b.train_samples(images[:200], labels[:200], 0, 0)
    assert np.array_equal(ca, cb)
    assert all(np.array_equal(x, y) for x, y in zip(a.weight_arrays().values(), b.weight_arrays().values()))
    import json
    c = stidi.stidi_learner_from_saved(json.loads(json.dumps(a.settings())), a.weight_arrays())
    assert c.rule == "stidi" and c.arith == arith
    a.train_samples(images[200:], labels[200:], 200, 0)
    c.train_samples(images[200:], labels[200:], 200, 0)
    for key, value in a.weight_arrays().items():
        assert np.array_equal(value, c.weight_arrays()[key]), key
    assert np.array_equal(a.predict(data.test.images[:100]), c.predict(data.test.images[:100]))


def test_different_seeds_differ():
    a = stidi.make_stidi_learner("fixed", "196-32-10", seed=5).weight_arrays()["w1"]
    b = stidi.make_stidi_learner("fixed", "196-32-10", seed=6).weight_arrays()["w1"]
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("arith", ["fixed", "float"])
def test_trace_records_one_training_step_without_changing_the_learner(arith, tmp_path):
    data = builtin()
    learner = stidi.make_stidi_learner(arith, "784-32-10", seed=3)
    before = {k: v.copy() for k, v in learner.weight_arrays().items()}
    # find a sample with a nonzero output error (at init every output ties, so sample 0 has one)
    trace = stidi.record_stidi_trace(learner, data.train.images[0], int(data.train.labels[0]), step=0, epoch=0)
    for key, value in learner.weight_arrays().items():
        assert np.array_equal(value, before[key])
    keys = list(trace)
    assert keys[:3] == ["encode/0/pixels", "encode/0/times", "forward/1/I"]
    for key in ["forward/1/U", "forward/1/times", "forward/2/I", "forward/2/U", "forward/2/times",
                "decision/2/pred", "target/2/case", "target/2/target", "update/2/dw", "update/2/w",
                "error/1/D", "update/1/dw", "update/1/w"]:
        assert key in trace, key
    assert keys.index("update/2/w") < keys.index("error/1/D") < keys.index("update/1/dw")
    assert trace["forward/1/U"].shape == (T, 32) and trace["update/1/w"].shape == (32, 784)
    # the trace's final weights are what training the learner on that sample produces
    learner.train_samples(data.train.images[:1], data.train.labels[:1], 0, 0)
    assert np.array_equal(trace["update/1/w"], learner.weight_arrays()["w1"])
    assert np.array_equal(trace["update/2/w"], learner.weight_arrays()["w2"])
    trace.save(tmp_path / "t.npz")
    assert first_divergence(trace, Trace.load(tmp_path / "t.npz")) is None
    if arith == "fixed":
        assert all(v.dtype.kind in "iub" for v in trace.values())
        # the membrane trace is the direct sum of the sign-plane ramps
        w_fwd = np.where(before["w1"] >= 0, 1, -1).T
        assert np.array_equal(trace["forward/1/U"], direct_membrane(trace["encode/0/times"], w_fwd))


def test_flat_input_takes_its_pixels_as_they_are():
    """A flat <n> input (n not 784/196): n pixels encoded one by one, the fc threshold rule."""
    topo = stidi.parse_stidi_topology("16-12-4")
    assert topo.n_pixels == 16 and topo.input_shape == (16,) and topo.layers == (("fc", 12), ("fc", 4))
    assert stidi.parse_stidi_topology("28-5-3").n_pixels == 28          # flat 28, not the 28x28 map
    learner = stidi.make_stidi_learner("fixed", "16-12-4", seed=2)
    assert learner.thresholds == {1: round(1.17 * 16), 2: round(1.17 * 12)}
    pixels = np.arange(32, dtype=np.uint8).reshape(2, 16) * 8
    assert np.array_equal(learner.encode(pixels), learner.table[pixels.astype(np.int64)])
    with pytest.raises(ValueError, match="takes 16 pixels per sample, not 15"):
        learner.encode(pixels[:, :15])
    trace = stidi.record_stidi_trace(learner, pixels[0], 1, step=0, epoch=0)
    assert trace["encode/0/pixels"].shape == (16,) and trace["forward/1/U"].shape == (T, 12)


def test_trace_follows_the_step_schedule():
    """record_stidi_trace at epoch e trains as train_samples does in epoch e (§9.1: one more right
    shift every lr_halving_epochs epochs)."""
    data = builtin()
    image, label = data.train.images[0], int(data.train.labels[0])
    learner = stidi.make_stidi_learner("fixed", "196-16-10", seed=4, lr_halving_epochs=1)
    first = stidi.record_stidi_trace(learner, image, label, step=0, epoch=0)
    third = stidi.record_stidi_trace(learner, image, label, step=0, epoch=2)
    assert learner.halvings == 0                      # the learner itself is unchanged
    assert not np.array_equal(first["update/2/dw"], third["update/2/dw"])
    learner.train_samples(data.train.images[:1], data.train.labels[:1], 0, 2)
    assert learner.halvings == 2
    assert np.array_equal(third["update/2/w"], learner.weight_arrays()["w2"])
    learner.set_epoch(1)
    assert learner.step_shift(1) == learner.lr_shift[1] + 1


class _Net:
    def __init__(self, output_levels):
        self.stages = [None, None]
        self.T, self.add, self.neg, self.output_levels = T, 15, 15, output_levels


def test_output_error_ternary_and_optional_power_of_two():
    times = [np.zeros(3), np.array([20, 30, 40])]
    u = membrane_with({})
    pred, (d, lvl) = fx.output_error(_Net(0), times, u, 1)
    assert pred == 0 and d.tolist() == [1, -1, 0] and lvl.tolist() == [0, 0, 0]   # target [35, 5, 40]
    # target - t = [15, -25, 0]: emax = msb(25) = 4; 15 -> 3 - 4 + 3 = 2; 25 -> 3
    _, (d, lvl) = fx.output_error(_Net(3), times, u, 1)
    assert d.tolist() == [1, -1, 0] and lvl.tolist() == [2, 3, 0]
    _, (d, lvl) = fx.output_error(_Net(0), [None, np.array([20, 30, 40])], u, 0)
    assert not d.any()                                                          # correct: no update


@pytest.mark.parametrize("topology, init_bits, thresholds, lr_shift", [
    ("784-128-10", (14, 12), (1000, 150), (0, 0)),
    ("196-64-10", (14, 12), (300, 75), (0, 0)),
    (stidi.CSNN_FPGA, (14, 13, 11), (160, 1200, 784), (4, 4, 0)),
    (stidi.CSNN_LARGE, (14, 13, 12, 11), (160, 2400, 1568, 150), (4, 4, 0, 0)),
])
def test_documented_defaults(topology, init_bits, thresholds, lr_shift):
    learner = stidi.make_stidi_learner("fixed", topology, 1)
    assert stidi.default_init_bits(learner.stages, learner.cfg) == init_bits
    assert tuple(learner.thresholds.values()) == thresholds
    assert tuple(learner.lr_shift.values()) == lr_shift


def test_error_norm_is_validated_and_old_saved_settings_mean_max():
    with pytest.raises(ValueError, match="error_norm 'l1' not in"):
        stidi.StidiConfig(error_norm="l1")
    learner = stidi.make_stidi_learner("fixed", "196-16-10", 1, error_norm="max", levels=3)
    settings = learner.settings()
    del settings["error_norm"]                   # as written before the field existed
    restored = stidi.stidi_learner_from_saved(settings, learner.weight_arrays())
    assert restored.error_norm == "max" and restored.levels == 3
    assert stidi.make_stidi_learner("fixed", "196-16-10", 1).error_norm == "l2"
