"""cocotb 2.x testbench of the desire-BP core: driver, monitor, golden model as reference.

Loaded by ``mfsnn.sim.runner`` (never imported by pytest directly). The job (config, weights,
samples, options) comes from the ``.npz``/JSON named by the ``MFSNN_JOB`` environment variable;
the outcome is written as JSON to ``MFSNN_REPORT``. Everything is sampled and driven on the falling
clock edge, so both Icarus and Verilator see settled values.
"""

import dataclasses
import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from mfsnn.golden.desire_config import DesireConfig
from mfsnn.rtl.core import CoreParams
from mfsnn.sim.model import (Checker, DebugDecoder, Report, Sample, SampleResult, decode_debug_word,
                             pack_weights, unpack_weights)


def _pack(layout, values: dict) -> int:
    word = 0
    for name, value in values.items():
        fld = layout[name]
        word |= (int(value) & ((1 << fld.width) - 1)) << fld.offset
    return word


def _unpack(layout, word: int, name: str) -> int:
    fld = layout[name]
    return (word >> fld.offset) & ((1 << fld.width) - 1)


class TB:
    """Clock, reset and bus-functional models of the core's ports."""

    def __init__(self, dut, params: CoreParams, rng: random.Random, idle_prob: float):
        self.dut, self.p, self.rng, self.idle_prob = dut, params, rng, idle_prob
        self.decoder = None
        self.records = 0

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
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
            if d.debug__valid.value == 1 and self.decoder is not None:
                self.decoder.add(*decode_debug_word(self.p, d.debug__payload.value.to_unsigned()))
                self.records += 1

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
                await FallingEdge(d.clk)
                words.append(d.wport__rdata.value.to_unsigned())
            out.append(unpack_weights(self.p, l, words))
        return out

    async def _idle(self):
        while self.idle_prob and self.rng.random() < self.idle_prob:
            await FallingEdge(self.dut.clk)

    async def send(self, valid, ready, payload, value):
        await self._idle()
        payload.value = value
        valid.value = 1
        while True:
            await ReadOnly()   # let this edge's writes settle before sampling ready
            take = ready.value == 1
            await FallingEdge(self.dut.clk)
            if take:
                break
        valid.value = 0

    async def run_sample(self, s: Sample, shift: int) -> SampleResult:
        d, p = self.dut, self.p
        if p.debug:
            self.decoder = DebugDecoder(p, s.train)
        await self.send(d.labels__valid, d.labels__ready, d.labels__payload,
                        _pack(p.label_layout, {"label": s.label, "train": int(s.train), "step": s.step,
                                               "shift": shift}))
        for px in np.asarray(s.pixels).tolist():
            await self.send(d.pixels__valid, d.pixels__ready, d.pixels__payload, int(px))
        if d.results__valid.value != 1:
            await RisingEdge(d.results__valid)     # event-driven: no Python per busy cycle
            await FallingEdge(d.clk)
        await self._idle()
        word = d.results__payload.value.to_unsigned()
        d.results__ready.value = 1
        await FallingEdge(d.clk)
        d.results__ready.value = 0
        lay = p.result_layout
        counts_word = _unpack(lay, word, "counts")
        cb = p.cfg.count_bits
        counts = np.array([(counts_word >> (j * cb)) & ((1 << cb) - 1) for j in range(p.sizes[-1])], dtype=np.int64)
        tie = _unpack(lay, word, "tie")
        res = SampleResult(counts, -1 if tie else _unpack(lay, word, "pred"), _unpack(lay, word, "cycles"))
        if p.debug:
            res.trace = self.decoder.trace
        return res


@cocotb.test()
async def bitexact(dut):
    """Stream the job's samples through the core and compare everything with the golden model."""
    job_path = os.environ["MFSNN_JOB"]
    with open(job_path + ".json") as f:
        job = json.load(f)
    arrays = np.load(job_path + ".npz")
    cfg = DesireConfig.from_dict(job["cfg"])
    params = CoreParams(cfg, job["parallelism"], job["debug"])
    weights = [arrays[f"w{l}"] for l in range(1, cfg.layers + 1)]
    images, labels, train = arrays["images"], arrays["labels"], arrays["train"]
    steps, epochs = arrays["steps"], arrays["epochs"]
    seed = int(os.environ.get("MFSNN_SEED", cocotb.RANDOM_SEED))
    tb = TB(dut, params, random.Random(seed), float(job.get("idle_prob", 0.0)))
    report = Report(config=job["label"], simulator=job["simulator"])
    checker = Checker(DesireConfig.from_dict(job.get("ref_cfg", job["cfg"])), weights, report)
    await tb.start()
    await tb.load_weights(weights)
    dut._log.info("weights loaded")
    readback = job["readback"]   # "every" | "end" | "never"
    wall = time.monotonic()
    start_cycle = dut.cycles.value.to_unsigned()
    n = len(labels)
    for q in range(n):
        s = Sample(images[q], int(labels[q]), bool(train[q]), int(steps[q]), int(epochs[q]))
        expected = checker.expect(s)
        got = await tb.run_sample(s, cfg.update_shift(s.epoch))
        if readback == "every" or (readback == "end" and q == n - 1):
            got.weights = await tb.read_weights()
        ok = checker.check(s, expected, got)
        dut._log.info("sample %d: %s, %d cycles, pred %d (label %d)", q, "match" if ok else "MISMATCH",
                      got.cycles, got.pred, s.label)
        if not ok:
            break
    report.sim_seconds = time.monotonic() - wall
    report.sim_cycles = dut.cycles.value.to_unsigned() - start_cycle
    with open(os.environ["MFSNN_REPORT"], "w") as f:
        json.dump(dataclasses.asdict(report), f)
    assert report.ok, str(report)
