"""Desire-BP integer golden model: hand-computed tiny cases written from docs/golden-spec.md."""

import numpy as np
import pytest

from mfsnn.golden import desire
from mfsnn.golden.desire import DesireConfig
from mfsnn.golden.trace import Trace

# theta = 16 (FW = 4), V saturates at 16 bits, update shift SH = lr_shift + FX - FW.
TINY = dict(weight_bits=8, weight_frac_bits=4, dropout=(0.0, 0.0))


def test_encoder_counts_follow_the_closed_form():
    cfg = DesireConfig(topology=(256, 2))
    spikes = desire.encode(cfg, np.arange(256, dtype=np.uint8))     # (T, 256)
    for t in range(cfg.time_steps):
        k = np.arange(256)
        assert (spikes[: t + 1].sum(axis=0) == ((t + 1) * k) // 255).all()


def test_encoder_hand_cases():
    cfg = DesireConfig(topology=(3, 2), time_steps=4, error_margin=0)
    spikes = desire.encode(cfg, np.array([0, 128, 255], dtype=np.uint8))
    # 128: vin 128, 256 -> spike (1), 129, 257 -> spike (2).  255 spikes every step.  0 never.
    assert spikes.T.tolist() == [[0, 0, 0, 0], [0, 1, 0, 1], [1, 1, 1, 1]]


def test_lif_steps_decay_fire_subtract():
    cfg = DesireConfig(topology=(2, 2), time_steps=4, error_margin=0, **TINY)
    weights = [np.array([[10, 0], [0, -7]])]
    fwd = desire.forward(cfg, weights, desire.encode(cfg, np.array([255, 255], dtype=np.uint8)))
    # neuron 0: 0-0+10=10; 10-2+10=18>=16 -> 2; 2-0+10=12; 12-3+10=19 -> 3
    assert fwd.v[1][:, 0].tolist() == [10, 2, 12, 3]
    assert fwd.spikes[1][:, 0].tolist() == [0, 1, 0, 1]
    # neuron 1 (negative): -7; -7-(-2)-7=-12; -12-(-3)-7=-16; -16-(-4)-7=-19
    assert fwd.v[1][:, 1].tolist() == [-7, -12, -16, -19]
    assert fwd.counts[1].tolist() == [2, 0]


def test_membrane_saturates_once_per_step():
    # FW = 0: theta = 1, V is 12-bit: [-2048, 2047]. 20 always-on inputs of weight -128 give -2560/step.
    cfg = DesireConfig(topology=(20, 2), time_steps=3, error_margin=0, weight_bits=8, weight_frac_bits=0, dropout=(0.0, 0.0))
    weights = [np.array([[-128] * 20, [127] * 20])]
    fwd = desire.forward(cfg, weights, desire.encode(cfg, np.full(20, 255, dtype=np.uint8)))
    assert fwd.v[1][:, 0].tolist() == [-2048, -2048, -2048]
    # +2540 saturates to 2047, fires, subtracts theta=1: 2046; then 2046-511+2540 -> 2047 - 1
    assert fwd.v[1][:, 1].tolist() == [2046, 2046, 2046]


def test_hidden_layer_sees_previous_step():
    cfg = DesireConfig(topology=(1, 1, 2), time_steps=3, error_margin=0, **TINY)
    weights = [np.array([[16]]), np.array([[16], [0]])]
    fwd = desire.forward(cfg, weights, desire.encode(cfg, np.array([255], dtype=np.uint8)))
    assert fwd.spikes[1][:, 0].tolist() == [1, 1, 1]
    assert fwd.spikes[2][:, 0].tolist() == [0, 1, 1]      # one step of delay


def test_dropped_neuron_integrates_but_never_fires():
    cfg = DesireConfig(topology=(1, 2), time_steps=2, error_margin=0, **TINY)
    masks = [np.array([True]), np.array([False, True])]
    fwd = desire.forward(cfg, [np.array([[20], [20]])], desire.encode(cfg, np.array([255], np.uint8)), masks,
                         train=True)
    assert fwd.spikes[1].tolist() == [[0, 1], [0, 1]]
    assert fwd.v[1][:, 0].tolist() == [20, 35]            # 20 - 5 + 20, no reset
    assert fwd.v[1][:, 1].tolist() == [4, 4 - 1 + 20 - 16]


def test_trace_recurrence_and_bound():
    cfg = DesireConfig(topology=(1, 2), time_steps=4, error_margin=0, **TINY)
    fwd = desire.forward(cfg, [np.array([[0], [0]])], desire.encode(cfg, np.array([255], np.uint8)),
                         [np.array([True]), np.array([True, True])], train=True)
    # x <- x - (x >> 2) + 256: 256, 448, 592, 700
    assert fwd.traces[1][:, 0].tolist() == [256, 448, 592, 700]
    long = DesireConfig(topology=(1, 2), time_steps=200, error_margin=0, **TINY)
    trace = desire.input_trace(long, np.array([255], np.uint8))
    assert trace.max() == 1 << (long.trace_frac_bits + long.decay_shift)
    assert trace.max() < 1 << long.trace_bits


def test_output_desire_rules():
    cfg = DesireConfig(topology=(4, 4))          # TM = 16, K_OUT = 4
    care, want = desire.output_desire(cfg, np.array([11, 12, 5, 4]), label=0)
    assert want.tolist() == [True, False, False, False]
    assert care.tolist() == [True, True, True, False]         # 16-11 > 4; 12 > 4; 5 > 4; 4 not
    care, _ = desire.output_desire(cfg, np.array([12, 0, 0, 0]), label=0)
    assert care.tolist() == [False, False, False, False]      # 16-12 = 4 is not > 4
    care, _ = desire.output_desire(cfg, np.array([18, 0, 0, 0]), label=0)
    assert care.tolist() == [False, False, False, False]      # over target: negative error, no care


@pytest.mark.parametrize("mode,expected", [("pow2", [-80, -40, 0]), ("exact", [-150, -90, -30])])
def test_hidden_desire_hand_case(mode, expected):
    cfg = DesireConfig(topology=(3, 2), error_mode=mode, **TINY)      # K_LIN = ceil(0.05*16*16) = 13
    assert cfg.k_lin == 13
    w = np.array([[10, 20, 30], [40, 50, 60]])
    # label neuron count 3: e = 13 (pow2 8), g = +1; other count 7: e = 7 (pow2 4), g = -1
    d, care, want = desire.hidden_desire(cfg, w, np.array([True, True]), np.array([True, False]),
                                         np.array([3, 7]), np.array([True, True]))
    assert d.tolist() == expected
    assert care.tolist() == [abs(x) >= 13 for x in expected]
    assert want.tolist() == [False, False, False]


def test_hidden_desire_skips_dropped_and_uncared():
    cfg = DesireConfig(topology=(3, 2), error_mode="pow2", **TINY)
    w = np.array([[10, 20, 30], [40, 50, 60]])
    d, _, want = desire.hidden_desire(cfg, w, np.array([True, True]), np.array([True, False]),
                                      np.array([3, 7]), np.array([True, False]))
    assert d.tolist() == [80, 160, 240] and want.all()
    d, _, _ = desire.hidden_desire(cfg, w, np.array([False, False]), np.array([True, False]),
                                   np.array([3, 7]), np.array([True, True]))
    assert d.tolist() == [0, 0, 0]


def test_update_rounds_half_up_and_saturates():
    cfg = DesireConfig(topology=(4, 2), time_steps=4, error_margin=0, lr_shift=17)   # FW 20, FX 8: SH = 5
    assert cfg.update_shift(0) == 5
    spikes = np.array([[0, 1], [1, 0], [0, 0], [1, 1]], dtype=np.uint8)   # post 0 fires at t=1,3
    traces = np.zeros((4, 4), dtype=np.int64)
    traces[1] = [8, 7, 24, 0]
    traces[3] = [8, 8, 24, 1]
    top = (1 << 23) - 1
    w = np.array([[0, 0, top, 5], [0, 0, 0, 0]])
    new = desire.update_layer(cfg, w, spikes, traces, care=np.array([True, False]), want=np.array([True, True]),
                              mask=np.array([True, True]), epoch=0, step=0, layer=1)
    # A = 16 -> (16+16)>>5 = 1; 15 -> 0; 48 -> 2 (saturates at the top); 1 -> 0
    assert new[0].tolist() == [1, 0, top, 5]
    assert new[1].tolist() == [0, 0, 0, 0]                   # no care: untouched
    new = desire.update_layer(cfg, w, spikes, traces, care=np.array([True, False]), want=np.array([False, True]),
                              mask=np.array([True, True]), epoch=0, step=0, layer=1)
    assert new[0].tolist() == [-1, 0, top - 2, 5]


def test_update_skips_silent_and_dropped_neurons():
    cfg = DesireConfig(topology=(1, 2), time_steps=2, error_margin=0)
    traces = np.full((2, 1), 1 << 10)
    spikes = np.array([[0, 1], [0, 1]], dtype=np.uint8)
    w = np.zeros((2, 1), dtype=np.int64)
    new = desire.update_layer(cfg, w, spikes, traces, np.array([True, True]), np.array([True, True]),
                              np.array([True, False]), 0, 0, 1)
    assert new.tolist() == [[0], [0]]       # neuron 0 silent, neuron 1 dropped


def test_learning_rate_schedule_shifts():
    cfg = DesireConfig()                    # lr 2^-16: SH = 16 + 8 - 20, one more every 17 epochs
    assert [cfg.update_shift(e) for e in (0, 16, 17, 34)] == [4, 4, 5, 6]


def test_constants_of_the_default_profile():
    cfg = DesireConfig()
    assert (cfg.theta, cfg.k_out, cfg.k_lin) == (1 << 20, 4, 838_861)
    assert (cfg.train_threshold(1), cfg.train_threshold(2)) == (1 << 20, 734_003)
    assert cfg.keep_threshold(1) == 45_875 and cfg.keep_threshold(2) == 65_536
    assert (cfg.membrane_bits, cfg.trace_bits) == (32, 11)


def test_dropout_masks_follow_the_hash():
    cfg = DesireConfig(topology=(784, 4, 10), seed=1)
    masks = desire.dropout_masks(cfg, 0)
    # r >> 16 for neurons 0..3 of layer 1 (hash vectors): 0x24b8, 0x2346, 0x5056, 0x02ef; all < 45875
    assert masks[1].tolist() == [True, True, True, True]
    assert masks[0].all() and masks[2].all()
    keep = sum(desire.dropout_masks(DesireConfig(topology=(784, 1000, 10)), q)[1].mean() for q in range(20)) / 20
    assert abs(keep - 0.7) < 0.02, keep


@pytest.mark.parametrize("bad", [dict(weight_bits=1), dict(time_steps=0), dict(error_mode="cubic"),
                                 dict(dropout=(0.0, 1.0)), dict(topology=(784,)), dict(weight_frac_bits=40)])
def test_impossible_configurations_are_refused(bad):
    with pytest.raises(ValueError, match="invalid desire-BP configuration"):
        DesireConfig(**bad)


def test_unknown_weight_profile_is_refused():
    with pytest.raises(ValueError, match="no weight profile for 7 bits"):
        DesireConfig.for_weight_bits(7)


def test_trace_records_every_phase_and_final_weights():
    cfg = DesireConfig(topology=(784, 16, 10), seed=3)
    weights = desire.init_weights(cfg)
    pixels = np.random.default_rng(3).integers(0, 256, 784).astype(np.uint8)
    trace = Trace()
    new, counts = desire.train_sample(cfg, weights, pixels, 4, step=0, epoch=0, trace=trace)
    phases = [key.split("/")[0] for key in trace]
    assert phases == sorted(phases, key=["encode", "forward", "desire", "update"].index)
    assert (trace["update/1/weights"] == new[0]).all() and (trace["update/2/weights"] == new[1]).all()
    assert (trace["forward/2/counts"] == counts).all()
    assert trace["desire/1/sum"].shape == (16,)


def test_classify_counts_ties_as_wrong():
    assert desire.classify(np.array([[1, 5, 2], [3, 3, 0], [0, 0, 0]])).tolist() == [1, -1, -1]


# ------------------------------------------------------------------------------------------------
# Speed paths: the float64 weight copy (MirroredWords) gives the same bits as plain int64 arrays
# ------------------------------------------------------------------------------------------------

MIRROR_CASES = {"784-24-10": (24, dict(topology=(784, 24, 10))),
                "196-20-12-10-pow2-stochastic": (16, dict(topology=(196, 20, 12, 10), error_mode="pow2",
                                                          rounding="stochastic")),
                "784-16-10-saturating": (8, dict(topology=(784, 16, 10), lr_shift=1))}


@pytest.mark.parametrize("case", MIRROR_CASES)
def test_mirrored_weights_train_to_the_same_bits_and_stay_equal_to_their_copy(case):
    from mfsnn.golden.data import input_pixels, load_dataset
    from mfsnn.golden.fixedpoint import MirroredWords

    weight_bits, settings = MIRROR_CASES[case]
    cfg = DesireConfig.for_weight_bits(weight_bits, seed=4, **settings)
    data = load_dataset("builtin").train
    pixels, labels = input_pixels(data.images[:40], cfg.topology[0]), data.labels[:40]
    plain = desire.init_weights(cfg)
    mirrored = [MirroredWords(w.copy(), cfg.weight_bits) for w in plain]
    for step, (x, y) in enumerate(zip(pixels, labels)):
        expected, got = Trace(), Trace()
        plain, counts = desire.train_sample(cfg, plain, x, int(y), step, 0, trace=expected)
        mirrored, mirrored_counts = desire.train_sample(cfg, mirrored, x, int(y), step, 0, trace=got,
                                                        in_place=True)
        assert list(expected) == list(got)
        assert all(np.array_equal(expected[key], got[key]) for key in expected), step
        assert np.array_equal(counts, mirrored_counts)
    for w, m in zip(plain, mirrored):
        assert np.array_equal(m.words, w)
        assert np.array_equal(m.mirror, w.astype(np.float64))       # the copy still holds the same values
    assert any(not np.array_equal(w, w0) for w, w0 in zip(plain, desire.init_weights(cfg)))


def test_learner_trains_the_same_bits_as_train_sample_on_arrays():
    from mfsnn.golden.data import input_pixels, load_dataset
    from mfsnn.golden.learners import make_learner

    data = load_dataset("builtin").train
    learner = make_learner("desire", "fixed", "784-24-10", seed=6)
    weights = [w.copy() for w in learner.weights]
    arrays = learner.weights
    hits = np.concatenate([learner.train_samples(data.images[lo:lo + 16], data.labels[lo:lo + 16], lo, 0)
                           for lo in (0, 16)])
    for step, (x, y) in enumerate(zip(input_pixels(data.images[:32], 784), data.labels[:32])):
        weights, counts = desire.train_sample(learner.cfg, weights, x, int(y), step, 0)
        assert hits[step] == (desire.classify(counts) == y)
    assert all(a is b for a, b in zip(learner.weights, arrays))     # updated in place, as before
    assert all(np.array_equal(a, b) for a, b in zip(learner.weights, weights))


def test_mirrored_weights_are_only_updated_in_place():
    from mfsnn.golden.fixedpoint import MirroredWords

    cfg = DesireConfig(topology=(1, 1), time_steps=2, error_margin=0, **TINY)
    with pytest.raises(ValueError, match="in_place=True"):
        desire.update_layer(cfg, MirroredWords(np.zeros((1, 1), np.int64), 8), np.ones((2, 1), np.uint8),
                            np.ones((2, 1), np.int64), np.array([True]), np.array([True]), np.array([True]), 0, 0, 1)


def _random_case(rng, saturating: bool):
    """(cfg, weights, masked input spikes, masks, train) of a random 1..3-layer network."""
    bits = int(rng.choice([8, 12, 16, 24]))
    if saturating:      # many inputs at the largest weights: membranes reach the VBITS limits
        sizes = (int(rng.integers(300, 785)),) + tuple(int(n) for n in rng.integers(150, 300, rng.integers(1, 3)))
    else:
        sizes = tuple(int(n) for n in rng.integers(1, 40, rng.integers(2, 5)))
    cfg = DesireConfig.for_weight_bits(bits, topology=sizes, seed=int(rng.integers(0, 1 << 16)))
    hi = (1 << (bits - 1)) - 1
    weights = [rng.integers(-hi - 1, hi + 1, (after, before)) if not saturating else
               np.where(rng.random((after, 1)) < 0.5, hi, -hi - 1).repeat(before, axis=1)    # rows of one sign
               for before, after in zip(sizes, sizes[1:])]
    train = bool(rng.integers(0, 2))
    masks = desire.dropout_masks(cfg, int(rng.integers(0, 1000))) if train else None
    spikes = desire.encode(cfg, rng.integers(0, 256, sizes[0]).astype(np.uint8))
    if masks is not None:
        spikes = spikes & masks[0].astype(np.uint8)
    return cfg, weights, spikes, masks, train


def _same_forward(a, b):
    for field in ("v", "spikes", "counts", "traces"):
        for x, y in zip(getattr(a, field), getattr(b, field), strict=True):
            assert (x is None) == (y is None), field
            assert x is None or (x.dtype == y.dtype and np.array_equal(x, y)), field


@pytest.mark.parametrize("seed", range(40))
def test_one_loop_over_the_steps_equals_layer_by_layer(seed):
    # _forward_steps (all layers per step, int64 sums of the spiking columns) is a second schedule of
    # the same spec as _forward_layers (one product per layer over all steps): same Forward, bit for bit.
    cfg, weights, spikes, masks, train = _random_case(np.random.default_rng(seed), saturating=False)
    stepwise = desire._forward_steps(cfg, weights, spikes, masks, train, None)
    assert stepwise is not None
    _same_forward(stepwise, desire._forward_layers(cfg, weights, spikes, masks, train, None))


@pytest.mark.parametrize("seed", range(6))
def test_one_loop_over_the_steps_leaves_saturating_membranes_to_the_layer_path(seed):
    cfg, weights, spikes, masks, train = _random_case(np.random.default_rng(seed), saturating=True)
    assert desire._forward_steps(cfg, weights, spikes, masks, train, None) is None
    layered = desire._forward_layers(cfg, weights, spikes, masks, train, None)
    assert (layered.v[1] == -(1 << (cfg.membrane_bits - 1))).any()     # the negative rows do saturate
    _same_forward(desire.forward(cfg, weights, spikes, masks, train), layered)


# ------------------------------------------------------------------------------------------------
# Option: the hidden "satisfied" check (hidden_satisfied_count)
# ------------------------------------------------------------------------------------------------

SATISFIED = 2       # low enough that hidden neurons of these small, sparsely firing nets reach it


def _trained_case(topology, seed):
    """A 784-...-10 net after 30 builtin samples (so hidden desires are mixed), and the next sample."""
    from mfsnn.golden.data import input_pixels, load_dataset

    cfg = DesireConfig(topology=topology, seed=seed, lr_shift=12)
    data = load_dataset("builtin").train
    pixels, labels = input_pixels(data.images[:31], 784), data.labels[:31]
    weights = desire.init_weights(cfg)
    for step in range(30):
        weights, _ = desire.train_sample(cfg, weights, pixels[step], int(labels[step]), step, 0)
    return cfg, weights, pixels[30], int(labels[30])


@pytest.mark.parametrize("seed", [1, 4, 6])
def test_satisfied_hidden_neurons_stop_caring_and_pass_no_desire_down(seed):
    print(f"seed {seed}")
    cfg, weights, pixels, label = _trained_case((784, 24, 16, 10), seed)
    checked = DesireConfig(**{**cfg.to_dict(), "hidden_satisfied_count": SATISFIED})
    off, on = Trace(), Trace()
    new_off, _ = desire.train_sample(cfg, weights, pixels, label, 30, 0, trace=off)
    new_on, _ = desire.train_sample(checked, weights, pixels, label, 30, 0, trace=on)
    for key in ("desire/3/care", "desire/3/want", "desire/2/sum", "desire/2/want"):   # above the check: as before
        assert np.array_equal(off[key], on[key]), key
    care, want, counts = off["desire/2/care"], off["desire/2/want"], off["forward/2/counts"]
    satisfied = care & want & (counts >= SATISFIED)
    assert satisfied.any() and (care & ~satisfied).any(), "the case must have satisfied and caring neurons"
    assert np.array_equal(on["desire/2/care"], care & ~satisfied)
    # layer 1 hears only the neurons that still care
    expected_sum, _, _ = desire.hidden_desire(cfg, weights[1], care & ~satisfied, want, counts,
                                              desire.dropout_masks(cfg, 30)[2])
    assert np.array_equal(on["desire/1/sum"], expected_sum)
    assert not np.array_equal(on["desire/1/sum"], off["desire/1/sum"])
    # satisfied rows of W2 keep their weights; every other row of W2 and all of W3 update as before
    rows = np.flatnonzero(satisfied & desire.dropout_masks(cfg, 30)[2])
    assert rows.size and not np.array_equal(new_off[1][rows], weights[1][rows])
    assert np.array_equal(new_on[1][rows], weights[1][rows])
    others = np.setdiff1d(np.arange(16), rows)
    assert np.array_equal(new_on[1][others], new_off[1][others])
    assert np.array_equal(new_on[2], new_off[2])


def test_float_reference_applies_the_same_satisfied_check():
    from mfsnn.golden import desire_float

    cfg, weights, pixels, label = _trained_case((784, 24, 10), 9)
    checked = DesireConfig(**{**cfg.to_dict(), "hidden_satisfied_count": 7})
    settings = desire_float.FloatSettings(lr=2.0 ** -12)
    start = [w / float(cfg.theta) for w in weights]
    new_off, _ = desire_float.train_sample_float(cfg, settings, start, pixels, label, 30, 0)
    new_on, _ = desire_float.train_sample_float(checked, settings, start, pixels, label, 30, 0)
    masks = desire.dropout_masks(cfg, 30)
    _, counts, _ = desire_float.forward_float(cfg, start, desire_float.encode_float(cfg, pixels), masks, train=True)
    potentiated = ((new_off[0] - start[0]) > 0).any(axis=1)        # rows that wanted +1 and cared
    satisfied = potentiated & (counts[1] >= 7)      # two potentiated rows: 6 and 7 spikes
    assert satisfied.any() and (potentiated & ~satisfied).any()
    assert np.array_equal(new_on[0][satisfied], start[0][satisfied])
    assert np.array_equal(new_on[0][~satisfied], new_off[0][~satisfied])
    assert np.array_equal(new_on[1], new_off[1])


def test_satisfied_count_above_the_time_steps_is_refused():
    with pytest.raises(ValueError, match="hidden_satisfied_count 21 above time_steps 20"):
        DesireConfig(hidden_satisfied_count=21)
