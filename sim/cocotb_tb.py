"""cocotb 2.x testbench of the training cores: driver, monitor, golden model as reference.

Loaded by ``mfsnn.sim.runner`` (never imported by pytest directly). The job (rule, config, weights,
samples, options) comes from the ``.npz``/JSON named by the ``MFSNN_JOB`` environment variable;
the outcome is written as JSON to ``MFSNN_REPORT``. Everything is sampled and driven on the falling
clock edge, so both Icarus and Verilator see settled values.

Both cores have the same ports (pixel, label and result streams, weight port, debug tap, cycle
counter); what differs by rule is in a bench (``DesireBench``, ``StidiBench``): the parameters, the
label and result beats, the debug decoder, the cycle limit and the checker.
"""

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from mfsnn.golden.desire_config import DesireConfig
from mfsnn.golden.stidi import StidiConfig
from mfsnn.rtl.core import CoreParams
from mfsnn.rtl.stidi_core import StidiCoreParams
from mfsnn.sim import stidi_check
from mfsnn.sim.cost import sample_cycle_limit
from mfsnn.sim.model import (KIND_NAMES, Checker, DebugDecoder, Report, Sample, SampleResult, pack_layout,
                             pack_weights, reads_back_weights, unpack_layout, unpack_weights)

CLOCK_NS = 10


class TestbenchTimeout(Exception):
    """The core stopped answering: names the sample and the handshake the testbench waited on."""


class DesireBench:
    """The desire-BP core (``CoreParams``) in this testbench."""

    def __init__(self, job: dict):
        cfg = DesireConfig.from_dict(job["cfg"])
        self.params = CoreParams(cfg, job["parallelism"], job["debug"], job["single_port"])
        self.reference = DesireConfig.from_dict(job["ref_cfg"])
        self.cycle_limit = sample_cycle_limit(cfg, self.params.P)
        self.kind_names = KIND_NAMES
        self.checker = None

    def start(self, job: dict, weights):
        """The report of this job, compared by ``check``."""
        report = Report(config=job["label"], simulator=job["simulator"])
        self.checker = Checker(self.reference, weights, report, self.params.debug, job["samples"])
        return report

    def decoder(self, train: bool):
        return DebugDecoder(self.params, train)

    def label_beat(self, s: Sample) -> int:
        return pack_layout(self.params.label_layout, {"label": s.label, "train": int(s.train), "step": s.step,
                                                      "shift": self.params.cfg.update_shift(s.epoch)})

    def result(self, word: int) -> SampleResult:
        result = unpack_layout(self.params.result_layout, word)
        return SampleResult(np.array(result["counts"], dtype=np.int64), -1 if result["tie"] else result["pred"],
                            result["cycles"])

    def check(self, s: Sample, got, last: bool) -> bool:
        return self.checker.check(s, self.checker.expect(s), got, last=last)


class StidiBench:
    """The STiDi-BP core (``StidiCoreParams``) in this testbench: the beats, decoder and checker of
    sim/stidi_check.py, the ones its Amaranth-simulator check uses."""

    def __init__(self, job: dict):
        self.params = StidiCoreParams(StidiConfig.from_dict(job["cfg"]), job["parallelism"], job["debug"])
        self.reference = StidiCoreParams(StidiConfig.from_dict(job["ref_cfg"]), job["parallelism"], job["debug"])
        self.cycle_limit = stidi_check.sample_cycle_limit(self.params)
        self.kind_names = stidi_check.KIND_NAMES
        self.checker = self.host = None

    def start(self, job: dict, weights):
        self.host = stidi_check.golden_learner(self.params, weights)     # LR_SHIFT of each sample's epoch
        self.checker = stidi_check.start_check(self.params, weights, job["samples"], reference=self.reference,
                                               simulator=job["simulator"])
        return self.checker.report

    def decoder(self, train: bool):
        return stidi_check.StidiDebugDecoder(self.params, train)

    def label_beat(self, s: Sample) -> int:
        return stidi_check.label_beat(self.params, self.host, s)

    def result(self, word: int):
        return stidi_check.SampleResult.from_word(self.params, word)

    def check(self, s: Sample, got, last: bool) -> bool:
        return self.checker.check(s, got, last=last)


#: job["rule"] -> its bench
BENCHES = {"desire": DesireBench, "stidi": StidiBench}


class TB:
    """Clock, reset and bus-functional models of the core's ports.

    Every wait is bounded by ``cycle_limit`` (the bench's per-sample cycle limit): a hang becomes a
    ``TestbenchTimeout`` naming the sample, the handshake and the last debug record.
    """

    def __init__(self, dut, bench, rng: random.Random, idle_prob: float):
        self.dut, self.bench, self.p, self.rng, self.idle_prob = dut, bench, bench.params, rng, idle_prob
        self.cycle_limit = bench.cycle_limit
        self.decoder = None           # the current sample's, None between samples
        self.stray_records = 0        # debug records outside any sample
        self.last_record = None
        self.where = "reset"

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        d = self.dut
        for sig in (d.pixels__valid, d.labels__valid, d.results__ready, d.wport__we, d.wport__addr,
                    d.wport__layer, d.wport__wdata, d.pixels__payload, d.labels__payload):
            sig.value = 0
        d.rst.value = 1
        for _ in range(3):
            await FallingEdge(d.clk)
        d.rst.value = 0
        if self.p.debug:
            cocotb.start_soon(self.monitor())

    async def monitor(self):
        """Debug tap: one record per cycle at most, no backpressure."""
        d = self.dut
        while True:
            await FallingEdge(d.clk)
            if d.debug__valid.value == 1:
                word = d.debug__payload.value.to_unsigned()
                self.last_record = unpack_layout(self.p.debug_layout, word)
                if self.decoder is None:
                    self.stray_records += 1
                else:
                    self.decoder.add_word(word)

    def timeout(self, waited_for: str) -> TestbenchTimeout:
        last = self.last_record
        phase = ("no debug tap" if not self.p.debug else "no debug record yet" if last is None else
                 f"last debug record {self.bench.kind_names.get(last['kind'], last['kind'])} layer {last['layer']} "
                 f"step {last['t']} neuron {last['n']}")
        return TestbenchTimeout(f"timed out after {self.cycle_limit} cycles in {self.where} waiting for "
                                f"{waited_for} ({phase})")

    async def load_weights(self, weights):
        d = self.dut
        await FallingEdge(d.clk)
        for l in range(1, self.p.L + 1):
            d.wport__layer.value = l - 1
            for a, word in enumerate(pack_weights(self.p, l, weights[l - 1])):
                d.wport__addr.value = a
                d.wport__wdata.value = word
                d.wport__we.value = 1
                await FallingEdge(d.clk)
        d.wport__we.value = 0

    async def read_weights(self):
        d = self.dut
        out = []
        for l in range(1, self.p.L + 1):
            d.wport__layer.value = l - 1
            words = []
            for a in range(self.p.w_depth(l)):
                d.wport__addr.value = a
                for _ in range(self.p.weight_read_latency):
                    await FallingEdge(d.clk)
                words.append(d.wport__rdata.value.to_unsigned())
            out.append(unpack_weights(self.p, l, words))
        return out

    async def _idle(self):
        while self.idle_prob and self.rng.random() < self.idle_prob:
            await FallingEdge(self.dut.clk)

    async def send(self, name, valid, ready, payload, value):
        """valid/ready handshake of one stream word; at most ``cycle_limit`` cycles."""
        await self._idle()
        payload.value = value
        valid.value = 1
        for _ in range(self.cycle_limit):
            await ReadOnly()   # let this edge's writes settle before sampling ready
            take = ready.value == 1
            await FallingEdge(self.dut.clk)
            if take:
                valid.value = 0
                return
        raise self.timeout(f"{name}.ready")

    async def run_sample(self, q: int, s: Sample):
        d, p = self.dut, self.p
        self.where = f"sample {q} ({'training' if s.train else 'inference'})"
        if p.debug:
            self.decoder = self.bench.decoder(s.train)
        await self.send("labels", d.labels__valid, d.labels__ready, d.labels__payload, self.bench.label_beat(s))
        for px in np.asarray(s.pixels).tolist():
            await self.send("pixels", d.pixels__valid, d.pixels__ready, d.pixels__payload, int(px))
        if d.results__valid.value != 1:
            try:     # event-driven: no Python per busy cycle
                await with_timeout(RisingEdge(d.results__valid), self.cycle_limit * CLOCK_NS, "ns")
            except SimTimeoutError:
                raise self.timeout("results.valid") from None
            await FallingEdge(d.clk)
        await self._idle()
        res = self.bench.result(d.results__payload.value.to_unsigned())
        d.results__ready.value = 1
        await FallingEdge(d.clk)
        d.results__ready.value = 0
        res.debug, self.decoder = self.decoder, None
        return res


def job_cycle_limit(job: dict, bench) -> int:
    """Simulated cycles the whole job may take (test-level backstop of the per-wait timeouts)."""
    params = bench.params
    words = sum(params.w_depth(l) for l in range(1, params.L + 1))
    per_sample = bench.cycle_limit + 2 * words + params.sizes[0] * 4
    return (job["samples"] + 1) * per_sample


with open(os.environ["MFSNN_JOB"] + ".json") as _job_file:
    _JOB = json.load(_job_file)
_BENCH = BENCHES[_JOB["rule"]](_JOB)


@cocotb.test(timeout_time=job_cycle_limit(_JOB, _BENCH) * CLOCK_NS, timeout_unit="ns")
async def bitexact(dut):
    """Stream the job's samples through the core and compare everything with the golden model."""
    job, bench, arrays = _JOB, _BENCH, np.load(os.environ["MFSNN_JOB"] + ".npz")
    weights = [arrays[f"w{l}"] for l in range(1, bench.params.L + 1)]
    images, labels, train = arrays["images"], arrays["labels"], arrays["train"]
    steps, epochs = arrays["steps"], arrays["epochs"]
    seed = int(os.environ.get("MFSNN_SEED", cocotb.RANDOM_SEED))
    tb = TB(dut, bench, random.Random(seed), float(job.get("idle_prob", 0.0)))
    n = len(labels)
    report = bench.start(job, weights)
    wall, start_cycle = time.monotonic(), None
    try:
        await tb.start()
        tb.where = "weight load"
        await tb.load_weights(weights)
        start_cycle = dut.cycles.value.to_unsigned()
        for q in range(n):
            s = Sample(images[q], int(labels[q]), bool(train[q]), int(steps[q]), int(epochs[q]))
            got = await tb.run_sample(q, s)
            if reads_back_weights(s.train, q == n - 1):
                tb.where = f"sample {q} weight read-back"
                got.weights = await tb.read_weights()
            ok = bench.check(s, got, last=q == n - 1)
            dut._log.info("sample %d: %s, %d cycles, pred %d (label %d)", q, "match" if ok else "MISMATCH",
                          got.cycles, got.pred, s.label)
            if not ok:
                break
        await FallingEdge(dut.clk)      # a record in the cycle after the last result is still counted
        if report.mismatch is None and tb.stray_records:
            report.mismatch = f"{tb.stray_records} debug records arrived outside any sample"
    except TestbenchTimeout as timeout:
        report.mismatch = str(timeout)
    finally:    # also when cocotb's test-level timeout cancels the test
        if report.mismatch is None and report.samples < n:
            report.mismatch = (f"the testbench stopped in {tb.where} after {report.samples} of {n} samples "
                               f"(test-level limit {job_cycle_limit(job, bench)} cycles)")
        report.sim_seconds = time.monotonic() - wall
        if start_cycle is not None:
            report.sim_cycles = dut.cycles.value.to_unsigned() - start_cycle
        with open(os.environ["MFSNN_REPORT"], "w") as f:
            json.dump(report.to_dict(), f)
    if not report.ok:
        raise AssertionError(str(report))
