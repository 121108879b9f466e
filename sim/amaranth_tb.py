"""Run the desire-BP core under Amaranth's own simulator (no external tools): the fast check.

``rtl_run`` drives the core like the cocotb testbench does (weight port, pixel and label streams,
result stream, debug tap) and returns one ``SampleResult`` per sample; ``check_amaranth`` compares
them with the golden model through the shared ``Checker``.
"""

import time

import numpy as np
from amaranth.sim import Simulator

from ..golden.desire_config import DesireConfig
from ..rtl.core import CoreParams, DesireCore
from .model import (Checker, DebugDecoder, Report, SampleResult, decode_debug_word, pack_weights,
                    unpack_weights)


def rtl_run(cfg: DesireConfig, parallelism: int, weights, samples, *, debug=True, readback=True,
            vcd=None, max_cycles=10_000_000, probe=None):
    """Simulate ``samples`` (list of ``Sample``) on a fresh core loaded with ``weights``."""
    params = CoreParams(cfg, parallelism, debug)
    dut = DesireCore(params)
    results = []
    decoders = []
    state = {"cycles": 0}

    async def load_weights(ctx):
        for l in range(1, params.L + 1):
            for a, word in enumerate(pack_weights(params, l, weights[l - 1])):
                ctx.set(dut.wport.layer, l - 1)
                ctx.set(dut.wport.addr, a)
                ctx.set(dut.wport.wdata, word)
                ctx.set(dut.wport.we, 1)
                await ctx.tick()
        ctx.set(dut.wport.we, 0)

    async def read_weights(ctx):
        out = []
        for l in range(1, params.L + 1):
            words = []
            ctx.set(dut.wport.layer, l - 1)
            for a in range(params.w_depth(l)):
                ctx.set(dut.wport.addr, a)
                await ctx.tick()
                words.append(ctx.get(dut.wport.rdata))
            out.append(unpack_weights(params, l, words))
        return out

    async def driver(ctx):
        await load_weights(ctx)
        for s in samples:
            if debug:
                decoders.append(DebugDecoder(params, s.train))
            ctx.set(dut.labels.payload.label, s.label)
            ctx.set(dut.labels.payload.train, int(s.train))
            ctx.set(dut.labels.payload.step, s.step)
            ctx.set(dut.labels.payload.shift, cfg.update_shift(s.epoch))
            ctx.set(dut.labels.valid, 1)
            await ctx.tick().until(dut.labels.ready)
            ctx.set(dut.labels.valid, 0)
            for px in np.asarray(s.pixels).tolist():
                ctx.set(dut.pixels.payload, int(px))
                ctx.set(dut.pixels.valid, 1)
                await ctx.tick().until(dut.pixels.ready)
            ctx.set(dut.pixels.valid, 0)
            ctx.set(dut.results.ready, 1)
            pred, tie, cycles, *counts = await ctx.tick().sample(
                dut.results.payload.pred, dut.results.payload.tie, dut.results.payload.cycles,
                *[dut.results.payload.counts[j] for j in range(params.sizes[-1])]).until(dut.results.valid)
            ctx.set(dut.results.ready, 0)
            res = SampleResult(np.array(counts, dtype=np.int64), -1 if tie else int(pred), int(cycles))
            if readback:
                res.weights = await read_weights(ctx)
            if debug:
                res.trace = decoders[-1].trace
            results.append(res)

    async def monitor(ctx):
        async for _, _, valid, word in ctx.tick().sample(dut.debug.valid, dut.debug.payload.as_value()):
            if valid and decoders:
                decoders[-1].add(*decode_debug_word(params, word))

    async def counter(ctx):
        async for _ in ctx.tick():
            state["cycles"] += 1
            if state["cycles"] > max_cycles:
                raise RuntimeError(f"simulation exceeded {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    if debug:
        sim.add_process(monitor)
    sim.add_process(counter)
    if probe is not None:           # probe(dut) -> async process, for debugging
        sim.add_process(probe(dut))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results, state["cycles"]


def check_amaranth(cfg: DesireConfig, parallelism: int, weights, samples, *, debug=True, readback=True,
                   reference_cfg: DesireConfig | None = None) -> Report:
    """Bit-exact comparison of the core (built for ``cfg``) under Amaranth's simulator with the golden
    model (run with ``reference_cfg``, default ``cfg``)."""
    report = Report(config=f"{'-'.join(map(str, cfg.topology))} P={parallelism}", simulator="amaranth")
    start = time.monotonic()
    results, cycles = rtl_run(cfg, parallelism, weights, samples, debug=debug, readback=readback)
    report.sim_seconds, report.sim_cycles = time.monotonic() - start, cycles
    checker = Checker(reference_cfg or cfg, weights, report)
    for s, got in zip(samples, results):
        if not checker.check(s, checker.expect(s), got):
            break
    if len(results) < len(samples) and report.mismatch is None:
        report.mismatch = f"the RTL returned {len(results)} results for {len(samples)} samples"
    return report
