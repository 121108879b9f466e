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
from .cost import sample_cycle_limit
from .model import (Checker, DebugDecoder, Report, SampleResult, pack_layout, pack_weights, reads_back_weights,
                    unpack_layout, unpack_weights)


class SimulationTimeout(RuntimeError):
    """The core did not finish a sample within ``sample_cycle_limit``: a hang."""


def simulate_core(dut, params, weights, samples, *, label_word, result_of, new_decoder, limit,
                  vcd=None, probe=None):
    """Drive any training core (``rtl/skeleton.core_members`` ports) under Amaranth's simulator.

    Loads ``weights`` through ``wport``, then per sample sends its label beat (``label_word(sample)``,
    a word of ``params.label_layout``) and its pixels, takes the result beat (``result_of(word)``: an
    object with ``weights`` and ``debug`` attributes) and reads every weight word back after every
    training sample and after the last one. With ``params.debug`` each sample's debug records go to a
    ``new_decoder(train)``. A sample that takes more than ``limit`` cycles raises ``SimulationTimeout``
    naming the sample and what the testbench waited for. Returns (results, total cycles, debug
    records outside any sample).
    """
    results, decoders = [], []
    state = {"cycles": 0, "sample_start": 0, "waiting_for": "weights load", "stray_records": 0, "in_sample": False}

    async def load_weights(ctx):
        for l in range(1, params.L + 1):
            ctx.set(dut.wport.layer, l - 1)
            for a, word in enumerate(pack_weights(params, l, weights[l - 1])):
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
                await ctx.tick().repeat(params.weight_read_latency)
                words.append(ctx.get(dut.wport.rdata))
            out.append(unpack_weights(params, l, words))
        return out

    async def driver(ctx):
        await load_weights(ctx)
        for q, s in enumerate(samples):
            mode = "training" if s.train else "inference"
            if params.debug:
                decoders.append(new_decoder(s.train))
            state.update(sample_start=state["cycles"], in_sample=True,
                         waiting_for=f"sample {q} ({mode}): labels.ready")
            ctx.set(dut.labels.payload.as_value(), label_word(s))
            ctx.set(dut.labels.valid, 1)
            await ctx.tick().until(dut.labels.ready)
            ctx.set(dut.labels.valid, 0)
            state["waiting_for"] = f"sample {q} ({mode}): pixels.ready"
            for px in np.asarray(s.pixels).tolist():
                ctx.set(dut.pixels.payload, int(px))
                ctx.set(dut.pixels.valid, 1)
                await ctx.tick().until(dut.pixels.ready)
            ctx.set(dut.pixels.valid, 0)
            state["waiting_for"] = f"sample {q} ({mode}): results.valid"
            ctx.set(dut.results.ready, 1)
            word, = await ctx.tick().sample(dut.results.payload.as_value()).until(dut.results.valid)
            ctx.set(dut.results.ready, 0)
            state["in_sample"] = False
            result = result_of(word)
            if reads_back_weights(s.train, q == len(samples) - 1):
                state["waiting_for"] = f"sample {q}: weight read-back"
                result.weights = await read_weights(ctx)
            if params.debug:
                result.debug = decoders[-1]
            results.append(result)

    async def monitor(ctx):
        async for _, _, valid, word in ctx.tick().sample(dut.debug.valid, dut.debug.payload.as_value()):
            if valid:
                if state["in_sample"]:
                    decoders[-1].add_word(word)
                else:
                    state["stray_records"] += 1

    async def counter(ctx):
        async for _ in ctx.tick():
            state["cycles"] += 1
            if state["in_sample"] and state["cycles"] - state["sample_start"] > limit:
                raise SimulationTimeout(f"timed out after {limit} cycles waiting for {state['waiting_for']}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    if params.debug:
        sim.add_process(monitor)
    sim.add_process(counter)
    if probe is not None:           # probe(dut) -> async process, for debugging
        sim.add_process(probe(dut))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results, state["cycles"], state["stray_records"]


def rtl_run(cfg: DesireConfig, parallelism: int, weights, samples, *, debug=True, vcd=None, probe=None,
            core_class=DesireCore, single_port=()):
    """Simulate ``samples`` (list of ``Sample``) on a fresh desire-BP core loaded with ``weights``
    (``simulate_core``). Returns (results, total cycles, debug records outside any sample)."""
    params = CoreParams(cfg, parallelism, debug, single_port)

    def label_word(sample):
        return pack_layout(params.label_layout, {"label": int(sample.label), "train": int(sample.train),
                                                 "step": int(sample.step), "shift": cfg.update_shift(sample.epoch)})

    def result_of(word):
        fields = unpack_layout(params.result_layout, word)
        return SampleResult(np.array(fields["counts"], dtype=np.int64), -1 if fields["tie"] else fields["pred"],
                            fields["cycles"])

    return simulate_core(core_class(params), params, weights, samples, label_word=label_word, result_of=result_of,
                         new_decoder=lambda train: DebugDecoder(params, train),
                         limit=sample_cycle_limit(cfg, parallelism), vcd=vcd, probe=probe)


def check_amaranth(cfg: DesireConfig, parallelism: int, weights, samples, *, debug=True,
                   reference_cfg: DesireConfig | None = None, core_class=DesireCore, single_port=()) -> Report:
    """Bit-exact comparison of the core (built for ``cfg``) under Amaranth's simulator with the golden
    model (run with ``reference_cfg``, default ``cfg``)."""
    report = Report(config=f"{'-'.join(map(str, cfg.topology))} P={parallelism}", simulator="amaranth")
    checker = Checker(reference_cfg or cfg, weights, report, debug, len(samples))
    return check_run(report, samples,
                     lambda: rtl_run(cfg, parallelism, weights, samples, debug=debug, core_class=core_class,
                                     single_port=single_port),
                     lambda sample, got, last: checker.check(sample, checker.expect(sample), got, last=last))


def check_run(report, samples, run, check_sample):
    """Run a simulation (``run()`` -> results, cycles, debug records outside any sample) and compare
    its results sample by sample (``check_sample(sample, result, last)``, False at a divergence),
    into ``report``: a hang, stray records or missing results are mismatches too."""
    start = time.monotonic()
    try:
        results, cycles, stray = run()
    except SimulationTimeout as timeout:
        report.mismatch = str(timeout)
        return report
    report.sim_seconds, report.sim_cycles = time.monotonic() - start, cycles
    if stray:
        report.mismatch = f"{stray} debug records arrived outside any sample"
        return report
    for q, (sample, got) in enumerate(zip(samples, results)):
        if not check_sample(sample, got, q == len(samples) - 1):
            break
    if len(results) < len(samples) and report.mismatch is None:
        report.mismatch = f"the RTL returned {len(results)} results for {len(samples)} samples"
    return report
