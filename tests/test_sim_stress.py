"""Stress cases: every saturation point (membrane and weight, both rails) and the trace, spike-count
and desire widths pushed to their extremes, bit-exact on Amaranth's simulator, Icarus and Verilator.

Each bit-exact test first replays the golden model through ``mfsnn.sim.coverage`` and asserts that
the case still hits its saturation points, so a change of stimulus or model cannot silently stop
exercising them. The cases live in ``mfsnn.sim.coverage.STRESS_CASES`` for reuse outside pytest.
"""

import dataclasses
import os

import numpy as np
import pytest

from mfsnn.golden.desire_config import DesireConfig
from mfsnn.sim.amaranth_tb import check_amaranth
from mfsnn.sim.coverage import SATURATION_POINTS, STRESS_CASES, Coverage, run_coverage, sample_coverage
from mfsnn.sim.model import Sample, reference_sample
from mfsnn.sim.runner import run_bitexact

CASE_IDS = [case.name for case in STRESS_CASES]


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    root = os.environ.get("MFSNN_SIM_BUILD")
    return root if root else str(tmp_path_factory.mktemp("stress_build"))


def stimulus_hitting_its_points(case):
    """The case's weights and samples, after checking on the golden replay that they hit its points."""
    print(f"{case.name}: seed {case.seed}")
    weights, samples = case.stimulus()
    coverage = run_coverage(case.cfg, weights, samples)
    print(coverage)
    assert coverage.missing(case.points) == [], f"{case.name} (seed {case.seed}) no longer hits {coverage.missing(case.points)}"
    # long windows and 255-pixels: a trace at its bound and a neuron spiking at every step
    assert coverage.trace_max == coverage.trace_bound and coverage.count_max == coverage.time_steps
    return weights, samples


def test_stress_cases_cover_every_saturation_point():
    covered = set()
    for case in STRESS_CASES:
        covered |= set(case.points)
    assert covered == set(SATURATION_POINTS)


@pytest.mark.parametrize("case", STRESS_CASES, ids=CASE_IDS)
def test_stress_bitexact_amaranth(case):
    weights, samples = stimulus_hitting_its_points(case)
    report = check_amaranth(case.cfg, case.parallelism, weights, samples)
    assert report.ok, str(report)
    assert report.samples == len(samples)


@pytest.mark.sim
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("case", STRESS_CASES, ids=CASE_IDS)
def test_stress_bitexact_cocotb(request, build_root, case, simulator):
    request.getfixturevalue(simulator)      # skip with the reason locally, fail under CI, if it is missing
    weights, samples = stimulus_hitting_its_points(case)
    images = np.stack([sample.pixels for sample in samples])
    labels = [sample.label for sample in samples]
    report = run_bitexact(case.cfg, weights, images, labels, simulator, build_root, seed=case.seed,
                          train=list(case.train), parallelism=case.parallelism, debug=True)
    assert report.ok, str(report)
    assert report.samples == len(samples)


def test_coverage_counts_known_membrane_rail_crossings():
    """Two inputs spiking at every step into one all-high-rail and one all-low-rail neuron: each
    weight alone is twice the 15-bit membrane range, so V' leaves it at every step."""
    cfg = DesireConfig(topology=(2, 2, 2), time_steps=4, error_margin=1, weight_bits=16, weight_frac_bits=3)
    weights = [np.array([[32767, 32767], [-32768, -32768]]), np.zeros((2, 2), dtype=np.int64)]
    sample = Sample(np.array([255, 255], dtype=np.uint8), label=0, train=False)
    coverage = sample_coverage(cfg, weights, sample, reference_sample(cfg, weights, sample).trace)
    assert (coverage.membrane_high, coverage.membrane_low) == (4, 4)
    assert coverage.per_point_layers == {"membrane_high": [1], "membrane_low": [1]}
    assert (coverage.count_max, coverage.count_at_window) == (4, 1)


@pytest.mark.parametrize("key,section", [("forward/1/v", "§4.2"), ("update/2/weights", "§4.4")])
def test_coverage_rejects_a_trace_that_breaks_the_spec(key, section):
    """A recorded membrane or updated weight that the spec's saturation cannot produce is an error,
    never a silent count (a golden shortcut that skipped a needed saturation would look like this)."""
    case = STRESS_CASES[0]
    weights, samples = case.stimulus()
    trace = reference_sample(case.cfg, weights, samples[0]).trace
    tampered = dict(trace)
    tampered[key] = np.array(trace[key], dtype=np.int64, copy=True)
    tampered[key].flat[0] += 1
    sample_coverage(case.cfg, weights, samples[0], trace)
    with pytest.raises(ValueError, match=section):
        sample_coverage(case.cfg, weights, samples[0], tampered)


def test_coverage_of_different_configurations_does_not_add():
    cfg = STRESS_CASES[0].cfg
    with pytest.raises(ValueError, match="different configurations"):
        Coverage.for_config(cfg) + Coverage.for_config(dataclasses.replace(cfg, time_steps=41))
