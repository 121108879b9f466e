# amaranth: UnusedElaboratable=no
"""The STiDi-BP core on conv topologies (rtl/stidi_core.py + rtl/stidi_map_forward.py, rtl/stidi_conv_update.py) under Amaranth's
simulator, bit-exact against the integer golden model: every input time, the current and membrane of
every conv and fc neuron at every step, every spike time, every pooling time and argmin, the
decision, targets, the displacements arriving at pooling and conv stages, every error level, the
result beat and every latent weight after every training sample; plus the checker naming the phase
and layer of an altered golden setting, and the host matrices the conv weights travel in.

Samples are random pixel images (30 % zeros) from fixed seeds (printed); T = 16 and one or two channels
keep them short (about 10,000 cycles per sample). At P > 1 a conv stage's lanes are P output channels
(channel counts not divisible by P leave padding lanes)."""

import numpy as np
import pytest

from mfsnn.golden.stidi import StidiConfig
from mfsnn.rtl.stidi_core import StidiCoreParams
from mfsnn.sim.amaranth_tb import check_run
from test_rtl_stidi_core import make_samples
from mfsnn.sim.stidi_check import (VALUE_KINDS, check_stidi, expected_sample, from_host, golden_learner,
                                   initial_weights, rtl_run, start_check, to_host)

T = 16


def conv(topology, debug=True, parallelism=1, **options):
    return StidiCoreParams(StidiConfig(topology=topology, time_steps=T, **options), parallelism, debug)


#: two conv layers with a pooling stage between them: the conv displacement (scatter) and both
#: routings through pooling; 10-bit weights with full steps saturate at both rails; dropout of the
#: pooling stage's pres in the conv update above it
TWO_CONV = conv("14x14-c3x1-p2-c3x2-10", weight_bits=10, lr_shift=(0, 0, 0), thresholds=(30, 20, 40), drop8=60)


def test_two_conv_layers_bitexact_amaranth():
    params = TWO_CONV
    samples = make_samples(params, 3, seed=7)
    report = check_stidi(params, initial_weights(params), samples)
    print(report)
    assert report.ok, str(report)
    assert report.samples == 3 and report.updating_samples >= 1
    for kind in VALUE_KINDS:
        assert report.expected[kind] == report.compared[kind] > 0, kind
    assert report.hidden_changes > 0                  # the backward reached the first conv layer
    assert report.dropped_fired > 0                   # dropout excluded fired pooling neurons
    # what the golden run exercised: a nonzero displacement out of the upper conv layer (through
    # its scatter), and saturated conv weights
    learner = golden_learner(params, initial_weights(params))
    reached, rails = False, False
    for sample in samples:
        trace = expected_sample(learner, sample, params.P).trace
        reached |= "error/2/D" in trace and bool(np.any(trace["error/2/D"]))
        for s in (1, 3):
            if f"update/{s}/w" in trace:
                rails |= bool(np.any(np.abs(trace[f"update/{s}/w"]) >= 511))
    assert reached and rails


def test_conv_layers_in_a_row_k5():
    """Two conv layers in a row (D goes straight into a conv stage, no routing) with a 5x5 kernel
    (padding 2), one training sample."""
    params = conv("14x14-c5x1-c3x1-p2-7", thresholds=(60, 20, 20))
    report = check_stidi(params, initial_weights(params), make_samples(params, 1, seed=5, pattern=(True,)))
    print(report)
    assert report.ok, str(report)
    assert report.expected == report.compared and report.hidden_changes > 0


#: conv layers each under a pooling layer (what P > 1 builds), the second one scattering its
#: displacement; 3 channels: padding lanes at P = 2 and 4
LANE_CASES = [
    ("14x14-c3x3-p2-10", 2, dict(thresholds=(30, 30)), 2),
    ("14x14-c3x3-p2-10", 4, dict(thresholds=(30, 30)), 2),
    ("28x28-c3x1-p2-c3x3-p2-10", 4, dict(weight_bits=10, lr_shift=(0, 0, 0), thresholds=(30, 20, 40), drop8=60), 3),
]


@pytest.mark.parametrize("topology,parallelism,options,n", LANE_CASES,
                         ids=[f"{c[0]}-P{c[1]}" for c in LANE_CASES])
def test_conv_lanes_bitexact_amaranth(topology, parallelism, options, n):
    """P lanes over output channels: every value of every kind equal to the golden model's, the
    backward reaching the first conv layer; with two conv layers also the scatter of the second's
    displacement and dropout of the pooled pres; fewer cycles than at P = 1."""
    params = conv(topology, parallelism=parallelism, **options)
    samples = make_samples(params, n, seed=7)
    report = check_stidi(params, initial_weights(params), samples)
    print(report)
    assert report.ok, str(report)
    for kind in VALUE_KINDS:
        assert report.expected[kind] == report.compared[kind] > 0, kind
    assert report.hidden_changes > 0
    if "drop8" in options:
        assert report.dropped_fired > 0
        learner = golden_learner(params, initial_weights(params))
        assert any(np.any(expected_sample(learner, sample, params.P).trace.get("error/2/D", 0)) for sample in samples)


def test_conv_lanes_need_a_pooling_layer_after_each_conv():
    """At P > 1 a conv stage's words hold channels, which only the pooling pass reads back one by
    one: a conv layer under a conv or fc layer is built at P = 1 only."""
    with pytest.raises(ValueError, match="needs a pooling layer after every conv layer"):
        conv("14x14-c3x1-p2-c3x2-10", parallelism=2)
    assert conv("14x14-c3x1-p2-c3x2-10").P == 1


def test_conv_lanes_layout():
    """A conv stage's word c_b*H*W + pos holds channels c_b*P .. c_b*P + P-1 (slots past the channels
    are padding); the pooling stages keep P consecutive neurons a word."""
    params = conv("14x14-c3x3-p2-10", debug=True, parallelism=4)
    assert params.stage_blocks(1) == 196 and params.stage_blocks(2) == -(-147 // 4)
    assert [params.slot_neuron(1, slot) for slot in (0, 1, 2, 3, 4, 5 * 4 + 2)] == [0, 196, 392, 588, 1, 392 + 5]
    assert params.slot_neuron(2, 9) == 9
    assert params.max_slot == 195 * 4


def test_conv_lanes_records_decode_every_lane_once():
    """A conv stage's record at P lanes fills P channels at one position; its padding lanes are
    skipped; a repeated slot, or a word past the stage, is a protocol error."""
    from mfsnn.rtl.stidi_params import StidiDebugKind as K
    from mfsnn.sim.stidi_check import StidiDebugDecoder
    params = conv("14x14-c3x3-p2-10", parallelism=4)
    decoder = StidiDebugDecoder(params, train=True)
    decoder.add(K.TIMES, 1, 0, 5 * 4, [1, 2, 3, 9], [0] * 4)
    times = decoder.trace["forward/1/times"]
    assert [times[n] for n in (5, 196 + 5, 392 + 5)] == [1, 2, 3] and not decoder.errors
    assert int(decoder.seen["forward/1/times"].sum()) == 3
    decoder.add(K.TIMES, 1, 0, 5 * 4, [1, 2, 3, 9], [0] * 4)
    decoder.add(K.TIMES, 1, 0, 196 * 4, [0] * 4, [0] * 4)
    assert decoder.errors == ["record 2: forward/1/times: duplicate report of neuron 5",
                              "record 3: forward/1/times: neuron 784 outside 0..587"]


@pytest.mark.parametrize("parallelism", [2, 4, 8])
def test_conv_host_matrices_round_trip_lanes(parallelism):
    """At P lanes the weight words are block-major (P output channels of one tap, P output neurons of
    one pre): the host matrices pack into exactly those words, and from_host inverts to_host."""
    from mfsnn.sim.model import pack_weights
    params = conv("28x28-c5x8-p2-c5x16-p2-10", debug=False, parallelism=parallelism)
    P = parallelism
    canonical = [np.arange(200).reshape(8, 25) + 1, np.arange(3200).reshape(16, 200) + 1,
                 np.arange(7840).reshape(10, 784) + 1]
    host = to_host(params, canonical)
    assert all(np.array_equal(a, b) for a, b in zip(from_host(params, host), canonical))
    for l, (s, w) in enumerate(zip(params.weight_stages, canonical), start=1):
        words = pack_weights(params, l, host[l - 1])
        assert len(words) == params.w_depth(l) >= params.weight_words(s)
        rows, fan_in = w.shape
        for b in range(-(-rows // P)):
            for i in (0, fan_in - 1):
                lanes = [(words[b * fan_in + i] >> (q * 16)) & 0xFFFF for q in range(P)]
                assert lanes == [int(w[b * P + q, i]) if b * P + q < rows else 0 for q in range(P)], (l, b, i)


def test_conv_host_matrices_round_trip():
    """The conv weights travel through the shared weight port as (s_l, s_{l-1}) host matrices (the
    row-major words, zero-padded): to_host / from_host are inverse, and the chain holds every word."""
    params = conv("28x28-c5x8-p2-c5x16-p2-10", debug=False)
    assert params.sizes == (1, 200, 16, 490)
    assert [params.w_depth(l) for l in (1, 2, 3)] == [200, 3200, 7840]
    canonical = [np.arange(200).reshape(8, 25), np.arange(3200).reshape(16, 200), np.arange(7840).reshape(10, 784)]
    host = to_host(params, canonical)
    assert [w.shape for w in host] == [(200, 1), (16, 200), (490, 16)]
    assert all(np.array_equal(a, b) for a, b in zip(from_host(params, host), canonical))


# ------------------------------------------------------------------------------------------------
# The checker names the phase and layer of an altered golden setting
# ------------------------------------------------------------------------------------------------

FAULT_PARAMS = conv("14x14-c3x1-p2-10", thresholds=(30, 30))
FAULTS = [
    # (golden setting altered against the RTL's, the start of the first divergence)
    ({"thresholds": (45, 30)}, "first divergence at sample 0, phase forward, layer 1, times, neuron (c, y, x)"),
    ({"lr_shift": (6, 0)}, "first divergence at sample 0, phase update, layer 1, w, output channel 0, input channel 0"),
    ({"levels": 5}, "first divergence at sample 0, phase error, layer 1, lvl, neuron (c, y, x)"),
]


@pytest.fixture(scope="module")
def fault_run():
    """One simulation of FAULT_PARAMS on one training sample, compared below with altered golden models."""
    params = FAULT_PARAMS
    weights, samples = initial_weights(params), make_samples(params, 1, seed=11, pattern=(True,))
    return weights, samples, rtl_run(params, weights, samples)


@pytest.mark.parametrize("fault,where", FAULTS, ids=[next(iter(f[0])) for f in FAULTS])
def test_altered_golden_setting_is_found_in_its_conv_phase_and_layer(fault_run, fault, where):
    """The core against a golden model with one setting altered: the report names the conv phase and
    stage that setting acts in (the unaltered model matches)."""
    params = FAULT_PARAMS
    weights, samples, results = fault_run
    for reference, ok in ((params, True), (conv("14x14-c3x1-p2-10", **{"thresholds": (30, 30), **fault}), False)):
        checker = start_check(params, weights, len(samples), reference=reference)
        report = check_run(checker.report, samples, lambda: results,
                           lambda sample, got, last: checker.check(sample, got, last=last))
        assert report.ok == ok, str(report)
    assert report.mismatch.startswith(where), report.mismatch
