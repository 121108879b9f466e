"""The checker accounts for every debug record: a duplicate, missing, unknown or out-of-range record
is a mismatch, and so is a record outside any sample. The records come from a real run of the core
under Amaranth's simulator and are then tampered with, one fault per case."""

import dataclasses

import numpy as np
import pytest

from mfsnn.golden.desire_config import DesireConfig, init_weights
from mfsnn.rtl.core import CoreParams, DebugKind, DesireCore
from mfsnn.sim.amaranth_tb import check_amaranth, rtl_run
from mfsnn.sim.model import (Checker, DebugDecoder, Report, Sample, pack_layout, unpack_layout)

CFG = DesireConfig(topology=(16, 12, 4))
P = 4
SEED = 21


@pytest.fixture(scope="module")
def recorded():
    """One training and one inference sample through the core: (samples, results)."""
    print(f"stimulus seed {SEED}")
    rng = np.random.default_rng(SEED)
    samples = [Sample(rng.integers(0, 256, 16).astype(np.uint8), 1, True, 0, 0),
               Sample(rng.integers(0, 256, 16).astype(np.uint8), 2, False, 1, 0)]
    results, _, stray = rtl_run(CFG, P, init_weights(CFG), samples)
    assert stray == 0
    return samples, results


def check_with_words(recorded, tamper):
    """Replay the run's records through fresh decoders, the first sample's words passed through ``tamper``."""
    samples, results = recorded
    params = CoreParams(CFG, P, True)
    report = Report(config="16-12-4 P=4", simulator="replay")
    checker = Checker(CFG, init_weights(CFG), report, True, len(samples))
    for q, (s, got) in enumerate(zip(samples, results)):
        decoder = DebugDecoder(params, s.train)
        for word in (tamper(list(got.debug.words)) if q == 0 else got.debug.words):
            decoder.add_word(word)
        if not checker.check(s, checker.expect(s), dataclasses.replace(got, debug=decoder), last=q == 1):
            break
    return report


def edit(words, index, **fields):
    params = CoreParams(CFG, P, True)
    rec = unpack_layout(params.debug_layout, words[index])
    rec.update(fields)
    return pack_layout(params.debug_layout, rec)


def test_untampered_records_match_with_every_kind_counted(recorded):
    report = check_with_words(recorded, lambda words: words)
    assert report.ok, str(report)
    assert report.expected == report.compared and report.compared["spikes"] > 0
    assert report.records["NEURON"] > 0 and report.records["SCAN"] > 0


@pytest.mark.parametrize("fault,tamper,message", [
    ("duplicate", lambda w: w[:5] + [w[4]] + w[5:], "duplicate report"),
    ("missing", lambda w: w[:4] + w[5:], "never reported"),
    ("missing last", lambda w: w[:-1], "never reported"),
    ("unknown kind", lambda w: w + [edit(w, 0, kind=15)], "unknown record kind 15"),
    ("neuron out of range", lambda w: w + [edit(w, 0, n=16 * 4)], "not the start of a block"),
    ("misaligned lane block", lambda w: w + [edit(w, 0, n=1)], "not the start of a block"),
    ("layer out of range", lambda w: w + [edit(w, 0, layer=7)], "the network has layers"),
    ("step out of range", lambda w: w + [edit(w, next(i for i, x in enumerate(w)
                                                       if unpack_layout(CoreParams(CFG, P, True).debug_layout, x)["kind"]
                                                       == DebugKind.NEURON), t=CFG.time_steps)], "time step"),
])
def test_tampered_records_are_a_mismatch(recorded, fault, tamper, message):
    report = check_with_words(recorded, tamper)
    assert not report.ok
    assert message in report.mismatch, report.mismatch
    assert "sample 0" in report.mismatch, report.mismatch


class DebugValidWhileIdle(DesireCore):
    """Test-only fault: a record claimed in every cycle between samples."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(~self.busy):
            m.d.comb += self.debug.valid.eq(1)
        return m


def test_records_between_samples_fail_the_run():
    rng = np.random.default_rng(SEED)
    samples = [Sample(rng.integers(0, 256, 16).astype(np.uint8), 0, True, 0, 0)]
    report = check_amaranth(CFG, P, init_weights(CFG), samples, core_class=DebugValidWhileIdle)
    assert not report.ok
    assert "outside any sample" in report.mismatch, report.mismatch


def test_incomplete_run_is_not_ok():
    report = Report(samples_in_job=2, samples=1)
    assert not report.ok and "1 of 2 samples" in str(report)
