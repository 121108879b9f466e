"""cocotb bit-exact checks of the desire-BP RTL under Icarus and Verilator (marker ``sim``).

One build directory per parameter set, shared by the tests of a session (``MFSNN_SIM_BUILD``
overrides it, e.g. to keep Verilator builds between runs). A missing simulator skips with the reason
on a developer's machine and fails under CI (``conftest.require_tool``).
"""

import dataclasses
import os

import numpy as np
import pytest

from mfsnn.golden.desire_config import DesireConfig, init_weights
from mfsnn.rtl.core import DesireCore
from mfsnn.sim.model import VALUE_KINDS
from mfsnn.sim.runner import DEBUG_SYNAPSE_LIMIT, run_bitexact, synapses

pytestmark = pytest.mark.sim


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    root = os.environ.get("MFSNN_SIM_BUILD")
    return root if root else str(tmp_path_factory.mktemp("sim_build"))


def stimulus(cfg, n, seed):
    print(f"stimulus seed {seed}")
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, cfg.topology[0])).astype(np.uint8)
    images[rng.random(images.shape) < 0.3] = 0
    return images, rng.integers(0, cfg.topology[-1], n)


def assert_complete(report, n, debug=True):
    """Every sample and every value of every kind this mode compares was compared, and equal."""
    assert report.ok, str(report)
    assert report.samples == report.samples_in_job == n, str(report)
    assert report.expected == report.compared, str(report)
    kinds = VALUE_KINDS if debug else ("counts", "predictions", "weights")
    assert all(report.compared[kind] > 0 for kind in kinds if kind != "masks"), str(report)
    if not debug:
        assert report.compared["spikes"] == 0 and not report.debug_tap


class ResultsNeverValid(DesireCore):
    """Test-only deadlock: the result stream never becomes valid."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.results.valid.eq(0)     # the last comb assignment wins
        return m


ICARUS_CASES = [
    # (id, cfg, P, seed, samples, train pattern)
    ("16-12-4-P1-s1", DesireConfig(topology=(16, 12, 4)), 1, 1, 3, True),
    ("16-12-4-P1-s2", DesireConfig(topology=(16, 12, 4)), 1, 2, 3, [True, False, True]),
    ("16-12-4-P4-s3", DesireConfig(topology=(16, 12, 4)), 4, 3, 4, [True, True, False, True]),
    ("16-12-4-P4-W16-s4", DesireConfig.for_weight_bits(16, topology=(16, 12, 4), lr_shift=10), 4, 4, 3, True),
    ("12-8-6-3-P2-exact-stoch-s5", DesireConfig(topology=(12, 8, 6, 3), error_mode="exact",
                                                rounding="stochastic", dropout=(0.1, 0.3)), 2, 5, 3, True),
]


@pytest.mark.usefixtures("icarus")
@pytest.mark.parametrize("name,cfg,parallelism,seed,n,train", ICARUS_CASES, ids=[c[0] for c in ICARUS_CASES])
def test_bitexact_icarus(build_root, name, cfg, parallelism, seed, n, train):
    images, labels = stimulus(cfg, n, seed)
    report = run_bitexact(cfg, init_weights(cfg, seed), images, labels, "icarus", build_root, seed=seed, train=train,
                          parallelism=parallelism, idle_prob=0.15)
    assert_complete(report, n)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_checker_localizes_altered_decay_shift(request, build_root, simulator):
    """The RTL built with decay shift 2 against a golden model with decay shift 1: the first
    divergence names the forward phase of layer 1 and a time step."""
    request.getfixturevalue(simulator)
    cfg = DesireConfig(topology=(16, 12, 4))
    images, labels = stimulus(cfg, 2, 7)
    report = run_bitexact(cfg, init_weights(cfg), images, labels, simulator, build_root, seed=7, parallelism=4,
                          reference_cfg=dataclasses.replace(cfg, decay_shift=1))
    assert not report.ok
    assert "phase forward, layer 1" in report.mismatch and "time step" in report.mismatch, report.mismatch


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_deadlocked_core_times_out_naming_the_wait(request, build_root, simulator):
    """A core whose result never becomes valid fails within the configuration's cycle limit, and the
    report names the sample, the handshake and the core's last debug record."""
    request.getfixturevalue(simulator)
    cfg = DesireConfig(topology=(16, 12, 4))
    images, labels = stimulus(cfg, 2, 8)
    report = run_bitexact(cfg, init_weights(cfg), images, labels, simulator, build_root, seed=8, parallelism=4,
                          core_class=ResultsNeverValid)
    assert not report.ok
    assert "timed out after" in report.mismatch, report.mismatch
    assert "sample 0 (training)" in report.mismatch and "results.valid" in report.mismatch, report.mismatch
    assert "last debug record" in report.mismatch, report.mismatch


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_bitexact_single_port_weights_and_traces(request, build_root, simulator):
    """W and X single-port, as the UP5K build maps them to SPRAM: bit-exact on both simulators."""
    request.getfixturevalue(simulator)
    cfg = DesireConfig(topology=(16, 12, 4), rounding="stochastic")
    images, labels = stimulus(cfg, 3, 13)
    report = run_bitexact(cfg, init_weights(cfg, 13), images, labels, simulator, build_root, seed=13,
                          train=[True, False, True], parallelism=2, idle_prob=0.1,
                          single_port=("w1", "w2", "x1", "x2"))
    assert_complete(report, 3)


@pytest.mark.usefixtures("verilator")
def test_bitexact_verilator_small(build_root):
    cfg = DesireConfig(topology=(16, 12, 4))
    images, labels = stimulus(cfg, 4, 11)
    report = run_bitexact(cfg, init_weights(cfg, 11), images, labels, "verilator", build_root, seed=11,
                          train=[True, True, False, True], parallelism=4, idle_prob=0.1)
    assert_complete(report, 4)


@pytest.mark.usefixtures("verilator")
@pytest.mark.slow
def test_bitexact_verilator_midsize_without_tap(build_root):
    """196-32-10, 20 samples, no debug tap: counts and predictions of every sample, every weight word
    after every training sample."""
    cfg = DesireConfig(topology=(196, 32, 10))
    images, labels = stimulus(cfg, 20, 12)
    report = run_bitexact(cfg, init_weights(cfg, 12), images, labels, "verilator", build_root, seed=12,
                          parallelism=16, debug=False)
    assert_complete(report, 20, debug=False)


@pytest.mark.usefixtures("verilator")
@pytest.mark.slow
def test_full_comparison_above_the_default_tap_limit_verilator(build_root):
    """The debug tap forced on a design above DEBUG_SYNAPSE_LIMIT synapses: every value compared."""
    cfg = DesireConfig(topology=(784, 32, 10))
    assert synapses(cfg) > DEBUG_SYNAPSE_LIMIT
    images, labels = stimulus(cfg, 2, 13)
    report = run_bitexact(cfg, init_weights(cfg, 13), images, labels, "verilator", build_root, seed=13,
                          train=[True, False], parallelism=2, debug=True)
    assert_complete(report, 2)
