"""The whole desire-BP core under Amaranth's simulator, bit-exact against the golden model
(every spike, membrane, trace, desire, count, prediction and weight word), plus proofs that the
checker catches and localizes a real difference."""

import dataclasses

import numpy as np
import pytest

from mfsnn.golden.desire_config import DesireConfig, init_weights
from mfsnn.rtl import CoreParams, generate_verilog
from mfsnn.sim.amaranth_tb import check_amaranth
from mfsnn.sim.model import Sample, pack_weights, unpack_weights


def make_samples(cfg, n, seed, train_pattern=(True, True, False)):
    rng = np.random.default_rng(seed)
    samples, step = [], 0
    for q in range(n):
        train = train_pattern[q % len(train_pattern)]
        pixels = rng.integers(0, 256, cfg.topology[0]).astype(np.uint8)
        pixels[rng.random(cfg.topology[0]) < 0.3] = 0
        samples.append(Sample(pixels, int(rng.integers(0, cfg.topology[-1])), train, step, 0))
        step += int(train)
    return samples


CASES = [
    ("16-12-4 P1", DesireConfig(topology=(16, 12, 4)), 1, 2),
    ("16-12-4 P4", DesireConfig(topology=(16, 12, 4)), 4, 3),
    ("16-10-8-4 P2 (3 layers)", DesireConfig(topology=(16, 10, 8, 4)), 2, 2),
    ("13-7-3 P4 exact stochastic dropout", DesireConfig(topology=(13, 7, 3), error_mode="exact",
                                                       rounding="stochastic", dropout=(0.2, 0.4)), 4, 3),
    ("20-9-5 P8 W16", DesireConfig.for_weight_bits(16, topology=(20, 9, 5), lr_shift=10), 8, 2),
    ("12-6-3 P1 W8 T9 DS1 SH6", DesireConfig.for_weight_bits(8, topology=(12, 6, 3), time_steps=9,
                                                             error_margin=2, decay_shift=1, lr_shift=3), 1, 3),
    ("16-12-4 P4 satisfied S=2", DesireConfig(topology=(16, 12, 4), hidden_satisfied_count=2), 4, 3),
    ("16-10-8-4 P2 satisfied S=3 (3 layers)", DesireConfig(topology=(16, 10, 8, 4), hidden_satisfied_count=3), 2, 4),
    ("16-7-3 P1 satisfied S=1 dropout", DesireConfig(topology=(16, 7, 3), dropout=(0.0, 0.3),
                                                     hidden_satisfied_count=1), 1, 4),
]
SATISFIED_CASES = [case for case in CASES if case[1].hidden_satisfied_count]


@pytest.mark.parametrize("name,cfg,parallelism,n", SATISFIED_CASES, ids=[c[0] for c in SATISFIED_CASES])
def test_satisfied_cases_reach_the_check(name, cfg, parallelism, n):
    # the RTL cases above prove the check only if some hidden neuron is satisfied in their samples
    from mfsnn.golden import desire
    from mfsnn.golden.trace import Trace

    unchecked = dataclasses.replace(cfg, hidden_satisfied_count=0)
    weights, reached = init_weights(cfg), 0
    for sample in make_samples(cfg, n, seed=parallelism):
        if not sample.train:
            continue
        with_check, without = Trace(), Trace()
        desire.train_sample(unchecked, weights, sample.pixels, sample.label, sample.step, 0, trace=without)
        weights, _ = desire.train_sample(cfg, weights, sample.pixels, sample.label, sample.step, 0, trace=with_check)
        reached += sum(int((with_check[key] != without[key]).sum()) for key in with_check
                       if key.startswith("desire/") and key.endswith("/care"))
    assert reached > 0


@pytest.mark.parametrize("name,cfg,parallelism,n", CASES, ids=[c[0] for c in CASES])
def test_core_bitexact_amaranth(name, cfg, parallelism, n):
    samples = make_samples(cfg, n, seed=parallelism)
    report = check_amaranth(cfg, parallelism, init_weights(cfg), samples)
    assert report.ok, str(report)
    assert report.samples == n and report.weights > 0 and report.spikes > 0
    if any(s.train for s in samples):
        assert report.desires > 0


SINGLE_PORT_CASES = [
    ("16-12-4 P1", DesireConfig(topology=(16, 12, 4)), 1, 3),
    ("16-10-8-4 P2 (3 layers)", DesireConfig(topology=(16, 10, 8, 4)), 2, 2),
    ("13-7-3 P4 exact stochastic dropout", DesireConfig(topology=(13, 7, 3), error_mode="exact",
                                                       rounding="stochastic", dropout=(0.2, 0.4)), 4, 3),
]


@pytest.mark.parametrize("name,cfg,parallelism,n", SINGLE_PORT_CASES, ids=[c[0] for c in SINGLE_PORT_CASES])
def test_core_bitexact_with_single_port_weights_and_traces(name, cfg, parallelism, n):
    """Every W and X memory single-port (as SPRAM on the UP5K): the same bits, and more cycles than
    dual-port, so the controller's stalls really happened (a collision would corrupt the read word:
    tests/test_memories.py)."""
    samples = make_samples(cfg, n, seed=parallelism + 10)
    weights = init_weights(cfg)
    every = CoreParams(cfg, parallelism).single_port_candidates
    single = check_amaranth(cfg, parallelism, weights, samples, single_port=every)
    assert single.ok, str(single)
    assert single.samples == n and single.weights > 0 and single.desires > 0
    dual = check_amaranth(cfg, parallelism, weights, samples)
    assert dual.ok, str(dual)
    assert single.sim_cycles > dual.sim_cycles, (single.sim_cycles, dual.sim_cycles)


def test_single_port_names_are_validated():
    cfg = DesireConfig(topology=(16, 12, 4))
    assert CoreParams(cfg, single_port=["w1", "x2"]).single_port == frozenset({"w1", "x2"})
    with pytest.raises(ValueError, match=r"single_port names unknown memories 'v1', 'w3'; choose from w1, w2, x1, x2"):
        CoreParams(cfg, single_port=["w3", "v1"])
    with pytest.raises(TypeError, match="not the string 'w1'"):
        CoreParams(cfg, single_port="w1")


def first_sample_that_differs(cfg, reference, key):
    """A one-sample stimulus on which the two golden configurations differ at ``key`` (golden only)."""
    from mfsnn.sim.model import reference_sample
    weights = init_weights(cfg)
    for seed in range(200):
        samples = make_samples(cfg, 1, seed=seed, train_pattern=(True,))
        a = reference_sample(cfg, weights, samples[0]).trace[key]
        b = reference_sample(reference, weights, samples[0]).trace[key]
        if not np.array_equal(a, b):
            return samples
    raise AssertionError(f"no stimulus separates the configurations at {key}")


@pytest.mark.parametrize("altered,phase,layer,name", [
    (dict(decay_shift=1), "forward", 1, None),          # another decay shift: the first layer's dynamics
    (dict(error_mode="pow2"), "desire", 1, "sum"),      # another error weight (default exact): the desire sum
    (dict(lr_shift=17), "update", 1, "weights"),        # another learning rate (default 16): layer-1 weights
])
def test_checker_localizes_altered_golden_parameter(altered, phase, layer, name):
    cfg = DesireConfig(topology=(16, 12, 4))
    reference = dataclasses.replace(cfg, **altered)
    samples = first_sample_that_differs(cfg, reference, f"{phase}/{layer}/{name or 'v'}")
    report = check_amaranth(cfg, 4, init_weights(cfg), samples, reference_cfg=reference)
    assert not report.ok
    text = report.mismatch
    assert f"phase {phase}" in text and f"layer {layer}" in text, text
    if name:
        assert name in text, text
    assert "expected" in text and "got" in text


def test_weight_packing_round_trip():
    cfg = DesireConfig(topology=(5, 7, 3))
    params = CoreParams(cfg, 4)
    for l, w in enumerate(init_weights(cfg), start=1):
        words = pack_weights(params, l, w)
        assert len(words) == params.w_depth(l)
        np.testing.assert_array_equal(unpack_weights(params, l, words), w)
    with pytest.raises(ValueError, match=r"W_1 has shape \(5, 7\), the core's layer 1 is \(7, 5\)"):
        pack_weights(params, 1, init_weights(cfg)[0].T)


def test_params_validation():
    with pytest.raises(ValueError, match="power of two"):
        CoreParams(DesireConfig(topology=(4, 3, 2)), 3)


def test_debug_port_only_when_asked():
    cfg = DesireConfig(topology=(4, 3, 2))
    text = generate_verilog(cfg, 2)
    assert "module desire_core" in text and "debug__" not in text
    assert "debug__valid" in generate_verilog(cfg, 2, debug=True)
