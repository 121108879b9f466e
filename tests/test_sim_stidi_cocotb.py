"""cocotb bit-exact checks of the STiDi-BP core (rtl/stidi_core.py) under Icarus and Verilator
(marker ``sim``), through ``mfsnn sim --rule stidi`` and ``sim.runner.run_stidi_bitexact``.

The testbench is the desire core's (sim/cocotb_tb.py, its ``StidiBench``) and the checker the one of
sim/stidi_check.py that the Amaranth-simulator tests use: every input time, current, membrane, spike
time, decision, target, displacement and error level, every prediction and output time, and every
latent weight after every training sample. T = 24 (as tests/test_rtl_stidi_core.py) keeps the runs
short; one build directory per parameter set, shared by the tests of a session (``MFSNN_SIM_BUILD``
overrides it). A missing simulator skips on a developer's machine and fails under CI.
"""

import os
import re

import numpy as np
import pytest

from mfsnn.golden.stidi import StidiConfig
from mfsnn.main import main
from mfsnn.rtl.stidi_core import StidiCore, StidiCoreParams
from mfsnn.sim.runner import build_key, run_stidi_bitexact
from mfsnn.sim.stidi_check import VALUE_KINDS, Sample, initial_weights

pytestmark = pytest.mark.sim

T = 24
#: the core `mfsnn sim --rule stidi --topology 16-12-4 --time-steps 24` builds (seed 1, default thresholds)
CLI_PARAMS = StidiCoreParams(StidiConfig(topology="16-12-4", time_steps=T, seed=1), 1, True)


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    root = os.environ.get("MFSNN_SIM_BUILD")
    return root if root else str(tmp_path_factory.mktemp("stidi_sim_build"))


def make_samples(params, n, seed, epochs=(0,)):
    """n samples: random pixels (30 % zeros), random labels, every third one inference; the epoch
    cycles through ``epochs``."""
    print(f"samples seed {seed}")
    rng = np.random.default_rng(seed)
    samples, step = [], 0
    for q in range(n):
        train = q % 3 != 2
        pixels = rng.integers(0, 256, params.n_pixels).astype(np.uint8)
        pixels[rng.random(params.n_pixels) < 0.3] = 0
        samples.append(Sample(pixels, int(rng.integers(0, params.n_classes)), train, step, epochs[q % len(epochs)]))
        step += int(train)
    return samples


def assert_complete(report, n, kinds=tuple(k for k in VALUE_KINDS if k != "pool argmins")):
    """Every sample and every value of every kind compared, and equal (``kinds``: those the
    topology has; a fully connected one has no pooling argmins)."""
    assert report.ok, str(report)
    assert report.samples == report.samples_in_job == n, str(report)
    assert report.expected == report.compared, str(report)
    assert all(report.compared[kind] > 0 for kind in kinds), str(report)


# ------------------------------------------------------------------------------------------------
# mfsnn sim --rule stidi
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_cli_sim_16_12_4_matches_every_value(request, build_root, simulator, capsys):
    """The must-show command at T = 24: exit 0, every kind of value compared and equal."""
    request.getfixturevalue(simulator)
    code = main(["sim", "--rule", "stidi", "--topology", "16-12-4", "--samples", "20", "--simulator", simulator,
                 "--time-steps", str(T), "--build-dir", build_root])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert f"16-12-4 P=1 on {simulator}: ALL MATCHED" in out and "24 of 24 (20 training" in out, out
    line = out.split("values (expected / compared): ")[1].splitlines()[0]
    counts = {kind: (int(a), int(b)) for kind, a, b in
              (re.fullmatch(r"([a-z ]+) (\d+)/(\d+)", item).groups() for item in line.split(", "))}
    assert list(counts) == list(VALUE_KINDS), line
    for kind, (expected, compared) in counts.items():
        assert expected == compared and (compared > 0 or kind == "pool argmins"), (kind, expected, compared)


# ------------------------------------------------------------------------------------------------
# Odd topologies, several layers, dropout, the step schedule, idle cycles on the streams
# ------------------------------------------------------------------------------------------------

ODD_CASES = [
    # (id, params, samples, seed, epochs)
    ("23-17-5-P2-dropout", StidiCoreParams(StidiConfig(topology="23-17-5", time_steps=T, thresholds=(60, 25),
                                                       drop8=60, seed=23), 2, True), 9, 23, (0,)),
    ("10-9-8-7-P1-signed-dropout-schedule",
     StidiCoreParams(StidiConfig(topology="10-9-8-7", time_steps=T, thresholds=(20, 6, 5), init_signed=True,
                                 drop8=60, lr_halving_epochs=1, seed=10), 1, True), 9, 10, (0, 1, 2)),
]


@pytest.mark.usefixtures("icarus")
@pytest.mark.parametrize("name,params,n,seed,epochs", ODD_CASES, ids=[c[0] for c in ODD_CASES])
def test_odd_topologies_icarus(build_root, name, params, n, seed, epochs):
    samples = make_samples(params, n, seed, epochs)
    report = run_stidi_bitexact(params, initial_weights(params), samples, "icarus", build_root, seed=seed,
                                idle_prob=0.15)
    print(report)
    assert_complete(report, n)
    assert report.hidden_changes > 0 and report.dropped_fired > 0, str(report)


# ------------------------------------------------------------------------------------------------
# The checker finds and localizes differences, and a hang
# ------------------------------------------------------------------------------------------------

FAULTS = [
    # (golden setting altered against the RTL's, the start of the first divergence)
    ({"thresholds": (19, 30)}, "first divergence at sample 0, phase forward, layer 2, times, neuron"),
    ({"lr_shift": (0, 1)}, "first divergence at sample 0, phase update, layer 2, w, post neuron"),
    ({"levels": 5}, "first divergence at sample 0, phase error, layer 1, lvl, neuron"),
]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("fault,where", FAULTS, ids=[next(iter(f[0])) for f in FAULTS])
def test_altered_golden_setting_is_found_in_its_phase_and_layer(request, build_root, simulator, fault, where):
    """The core of CLI_PARAMS (the build of the CLI test) against a golden model with one setting
    altered: the report names the phase and layer that setting acts in."""
    request.getfixturevalue(simulator)
    reference = StidiCoreParams(StidiConfig(**{**CLI_PARAMS.cfg.to_dict(), **fault}), 1, True)
    report = run_stidi_bitexact(CLI_PARAMS, initial_weights(CLI_PARAMS), make_samples(CLI_PARAMS, 3, 11),
                                simulator, build_root, seed=11, reference=reference)
    assert not report.ok
    assert report.mismatch.startswith(where), report.mismatch


class ResultsNeverValid(StidiCore):
    """Test-only deadlock: the result stream never becomes valid."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.results.valid.eq(0)     # the last comb assignment wins
        return m


@pytest.mark.usefixtures("icarus")
def test_deadlocked_core_times_out_naming_the_wait(build_root):
    params = CLI_PARAMS
    report = run_stidi_bitexact(params, initial_weights(params), make_samples(params, 2, 8), "icarus", build_root,
                                seed=8, core_class=ResultsNeverValid)
    assert not report.ok
    assert "timed out after" in report.mismatch, report.mismatch
    assert "sample 0 (training)" in report.mismatch and "results.valid" in report.mismatch, report.mismatch
    assert "last debug record" in report.mismatch, report.mismatch


def test_build_key_follows_parameters_and_core_class():
    """One build per parameter set and core class (the generator sources are in every key)."""
    other = StidiCoreParams(StidiConfig(topology="16-12-4", time_steps=T, seed=1), 2, True)
    same = StidiCoreParams(StidiConfig(topology="16-12-4", time_steps=T, seed=1), 1, True)
    assert build_key(CLI_PARAMS) == build_key(same)
    assert len({build_key(CLI_PARAMS), build_key(other), build_key(CLI_PARAMS, ResultsNeverValid)}) == 3


# ------------------------------------------------------------------------------------------------
# Conv topologies: conv, pooling, unpooling, the conv update and displacement (P = 1 and P = 2)
# ------------------------------------------------------------------------------------------------

CONV_T = 16
#: one conv layer and pooling under an fc output; thresholds that make every stage fire at T = 16
CONV_PARAMS = StidiCoreParams(StidiConfig(topology="14x14-c3x1-p2-10", time_steps=CONV_T, thresholds=(30, 30)),
                              1, True)
CONV_FAULTS = [
    ({"thresholds": (45, 30)}, "first divergence at sample 0, phase forward, layer 1, times, neuron (c, y, x)"),
    ({"lr_shift": (6, 0)}, "first divergence at sample 0, phase update, layer 1, w, output channel 0"),
    ({"levels": 5}, "first divergence at sample 0, phase error, layer 1, lvl, neuron (c, y, x)"),
]


@pytest.mark.usefixtures("icarus")
@pytest.mark.parametrize("params", [
    lambda: CONV_PARAMS,
    # P = 2 lanes over 3 output channels (a padding lane)
    lambda: StidiCoreParams(StidiConfig(topology="14x14-c3x3-p2-10", time_steps=CONV_T, thresholds=(30, 30)), 2, True),
], ids=["conv", "conv-lanes"])
def test_conv_topology_icarus_matches_every_value(build_root, params):
    """Every kind of value of a conv topology (pooling argmins included) compared and equal under Icarus."""
    params = params()
    samples = make_samples(params, 3, 12)
    report = run_stidi_bitexact(params, initial_weights(params), samples, "icarus", build_root, seed=12,
                                idle_prob=0.1)
    print(report)
    assert_complete(report, 3, VALUE_KINDS)
    assert report.hidden_changes > 0, str(report)


@pytest.mark.parametrize("simulator,fault,where",
                         [("icarus", *case) for case in CONV_FAULTS] + [("verilator", *CONV_FAULTS[1])],
                         ids=[f"icarus-{next(iter(f[0]))}" for f in CONV_FAULTS] + ["verilator-lr_shift"])
def test_conv_altered_golden_setting_is_found_in_its_phase_and_layer(request, build_root, simulator, fault, where):
    """The conv core against a golden model with one setting altered: the report names the conv
    phase and stage that setting acts in (every setting on Icarus; Verilator, whose build of the
    conv core takes a minute or two, on one)."""
    request.getfixturevalue(simulator)
    params = CONV_PARAMS
    reference = StidiCoreParams(StidiConfig(**{**params.cfg.to_dict(), **fault}), 1, True)
    samples = [s for s in make_samples(params, 3, 11) if s.train][:1]
    report = run_stidi_bitexact(params, initial_weights(params), samples, simulator, build_root, seed=11,
                                reference=reference)
    assert not report.ok
    assert report.mismatch.startswith(where), report.mismatch
