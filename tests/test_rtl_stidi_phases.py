# amaranth: UnusedElaboratable=no
"""The STiDi-BP core's phases (rtl/stidi_*.py) one at a time under Amaranth's simulator: the port naming
the core's memory join relies on, and the decision and target phases alone on their own memories
against the golden ``decide`` and ``targets``, and the lane helpers the list build and the update scan
use (the whole core: tests/test_rtl_stidi_core.py)."""

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mfsnn.golden import stidi_fixed
from mfsnn.golden.stidi import StidiConfig
from mfsnn.rtl.phase_ports import join_ports, memory_ports
from mfsnn.rtl.stidi_core import StidiCore, StidiCoreParams
from mfsnn.rtl.stidi_decision import StidiDecision, StidiTargets
from mfsnn.rtl.stidi_ports import live_lanes, lowest_set, memory_table

PARAMS = [
    StidiCoreParams(StidiConfig(topology="16-12-4", time_steps=24, thresholds=(40, 20), drop8=60), 4, debug=True),
    StidiCoreParams(StidiConfig(topology="10-9-8-7", time_steps=24, thresholds=(20, 6, 5)), 1),
    StidiCoreParams(StidiConfig(topology="13-5", time_steps=20, thresholds=(9,), add=6, neg=3), 2),
    StidiCoreParams(StidiConfig(topology="14x14-c3x1-p2-c3x2-10", time_steps=16, thresholds=(30, 20, 40), drop8=60),
                    1, debug=True),
]
IDS = [f"{p.topology} P{p.P}" for p in PARAMS]


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_every_port_names_a_memory_and_every_read_memory_is_written(params):
    table = memory_table(params)
    read, written = set(), {"time0"} | {f"{kind}{l}" for kind in "ws" for l in range(1, params.L + 1)}  # the core's IDLE
    for phase in StidiCore(params)._phases().values():
        Fragment.get(phase, None)                        # each phase elaborates on its own
        for name, kind, port in memory_ports(phase):
            assert name in table, (type(phase).__name__, name)
            assert len(port.addr) == table[name].addr_bits, (type(phase).__name__, name)
            (read if kind == "read" else written).add(name)
    assert read <= written, sorted(read - written)
    assert set(table) == read | written, sorted(set(table) - read - written)


def output_phases(params, times, membrane, label):
    """The decision, then (training) the target phase on their own memories; returns (pred, case,
    any_error, error signs) as the phases leave them."""
    p, top, T = params, params.top, params.T
    table = memory_table(p)
    n_blocks = p.stage_blocks(top)
    lanes = np.full(n_blocks * p.P, T, dtype=np.int64)
    lanes[:p.n_classes] = times
    u = np.zeros((T, n_blocks * p.P), dtype=np.int64)
    u[:, :p.n_classes] = membrane
    m = Module()
    dec, tgt = m.submodules.decision, m.submodules.targets = StidiDecision(p), StidiTargets(p)
    memories = {
        f"time{top}": Memory(shape=table[f"time{top}"].shape, depth=table[f"time{top}"].depth,
                             init=[list(lanes[b * p.P:(b + 1) * p.P]) for b in range(n_blocks)]),
        "u_out": Memory(shape=table["u_out"].shape, depth=table["u_out"].depth,
                        init=[list(u[t, b * p.P:(b + 1) * p.P]) for b in range(n_blocks) for t in range(T)]),
        "err": Memory(shape=table["err"].shape, depth=table["err"].depth, init=[]),
    }
    ports = {}
    for name, memory in memories.items():
        m.submodules[name] = memory
        ports[name] = memory.read_port(), memory.write_port()
    join_ports(m, ports, [dec, tgt])
    m.d.comb += [dec.label.eq(label), tgt.label.eq(label), tgt.pred.eq(dec.pred), tgt.case.eq(dec.case),
                 tgt.t_min.eq(dec.t_min), tgt.t_max.eq(dec.t_max)]
    got = {}

    async def bench(ctx):
        await ctx.tick()                                 # the phases' FSMs leave START for IDLE
        for phase in (dec, tgt):
            ctx.set(phase.start, 1)
            await ctx.tick()
            ctx.set(phase.start, 0)
            for _ in range(4 * (p.n_classes + n_blocks) + 16):
                if ctx.get(phase.done):
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"{type(phase).__name__} never raised done")
            await ctx.tick()
            assert not ctx.get(phase.done)           # one pulse
        got["pred"], got["case"], got["any"] = ctx.get(dec.pred), ctx.get(dec.case), ctx.get(tgt.any_error)
        got["signs"] = [ctx.get(memories["err"].data[b]).sign[q] for b in range(n_blocks) for q in range(p.P)]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got["pred"], got["case"], got["any"], np.array(got["signs"][:p.n_classes])


def output_cases(params, seed):
    """Output times with ties, silent outputs and a winning label, and membranes, from ``seed``."""
    rng = np.random.default_rng(seed)
    T, n = params.T, params.n_classes
    bound = (1 << (params.membrane_bits - 2)) - 1
    for case in range(12):
        times = rng.integers(0, T + 1, n)
        if case % 4 == 0:
            times[:] = T                                 # nothing fired
        elif case % 4 == 1:
            times[rng.integers(0, n, 2)] = times.min()   # a tie for the earliest
        membrane = rng.integers(-bound, bound, (T, n))
        if case % 3 == 0:
            membrane[:, 1:] = membrane[:, :1]            # tied membranes: the lower index wins
        yield times, membrane, int(rng.integers(0, n))


@pytest.mark.parametrize("params", PARAMS[:3], ids=IDS[:3])
def test_decision_and_targets_match_the_golden_model(params):
    cfg, T = params.cfg, params.T
    for times, membrane, label in output_cases(params, seed=params.P + params.L):
        pred, case, any_error, signs = output_phases(params, times, membrane, label)
        target, golden_case = stidi_fixed.targets(times, membrane, label, T, cfg.add, cfg.neg)
        expected = stidi_fixed.sign(target - times)
        assert (pred, case) == (stidi_fixed.decide(times, membrane, T), golden_case), (times, label)
        assert np.array_equal(signs, expected) and any_error == bool(expected.any()), (times, label, signs)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 7, 16, 33])
def test_lowest_set_names_the_lowest_set_bit(width):
    """The forward's link and the update's pre and block choice take the lowest set bit in one cycle."""
    bits, index = Signal(width), Signal(8)
    m = Module()
    m.d.comb += index.eq(lowest_set(bits))
    rng = np.random.default_rng(width)
    values = [1 << q for q in range(width)] + [(1 << width) - 1] + [int(v) | 1 << int(rng.integers(width))
                                                                  for v in rng.integers(0, 1 << min(width, 62), 40)]

    async def bench(ctx):
        for value in values:
            ctx.set(bits, value)
            assert ctx.get(index) == (value & -value).bit_length() - 1, hex(value)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("size,P", [(16, 4), (10, 4), (13, 16), (7, 1)])
def test_live_lanes_masks_the_last_words_padding(size, P):
    params = StidiCoreParams(StidiConfig(topology=f"{size}-3", time_steps=20, thresholds=(5,)), P)
    word, mask = Signal(8), Signal(P)
    m = Module()
    m.d.comb += mask.eq(live_lanes(params, word, 0))

    async def bench(ctx):
        for w in range(params.stage_blocks(0)):
            ctx.set(word, w)
            lanes = [w * P + q < size for q in range(P)]
            assert ctx.get(mask) == sum(1 << q for q, live in enumerate(lanes) if live), w

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
