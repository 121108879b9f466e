# amaranth: UnusedElaboratable=no
"""The desire-BP core's phases (rtl/desire_*.py) one at a time under Amaranth's simulator, each on
its own memories: the start/done handshake, the port naming the core's sharing relies on, and the
small phases against the golden model (the whole core: tests/test_rtl_core.py)."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mfsnn.golden import desire as golden
from mfsnn.golden.desire_config import ROUNDING_SALT, DesireConfig
from mfsnn.golden.hashing import mix32_int
from mfsnn.rtl import CoreParams
from mfsnn.rtl.desire_forward import DesireForward
from mfsnn.rtl.desire_hidden import DesireHidden
from mfsnn.rtl.desire_masks import DesireMasks, hash_lanes
from mfsnn.rtl.desire_output import DesireOutputDesire, DesireResult
from mfsnn.rtl.desire_ports import memory_table
from mfsnn.rtl.desire_update import DesireUpdate
from mfsnn.rtl.lanes import Mix32

PARAMS = [
    CoreParams(DesireConfig(topology=(16, 12, 4)), 1),
    CoreParams(DesireConfig(topology=(13, 7, 3), rounding="stochastic", dropout=(0.2, 0.4)), 4, debug=True),
    CoreParams(DesireConfig(topology=(16, 10, 8, 4)), 2),
    CoreParams(DesireConfig(topology=(9, 5)), 4),
]
IDS = [f"{'-'.join(map(str, p.sizes))} P{p.P}" for p in PARAMS]


def phases_of(params):
    phases = [DesireMasks(params), DesireForward(params), DesireResult(params), DesireOutputDesire(params),
              DesireUpdate(params)]
    return phases + ([DesireHidden(params)] if params.L >= 2 else [])


def memory_ports(phase):
    """(memory name, "read" | "write", port) of every memory port ``phase`` declares."""
    for member in phase.signature.members:
        name, _, kind = member.rpartition("_")
        if kind in ("read", "write"):
            yield name, kind, getattr(phase, member)


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_every_port_names_a_memory_and_every_memory_has_one_writer(params):
    table = memory_table(params)
    writers = {name: [] for name in table}
    read = set()
    for phase in phases_of(params):
        for name, kind, port in memory_ports(phase):
            assert name in table, (type(phase).__name__, name)
            assert len(port.addr) == table[name].addr_bits
            if kind == "write":
                writers[name].append(type(phase).__name__)
            else:
                read.add(name)
    # pix and vin are also written by the core's IDLE (pixel loading); pix by nothing else
    assert writers.pop("pix") == [] and writers.pop("vin") == ["DesireForward"]
    assert all(len(owners) == 1 for owners in writers.values()), writers
    assert read == set(table), set(table) - read


def harness(phase, params, init=()):
    """``phase`` on memories of its own (``init``: name -> words), and the mix32 bank if it hashes.
    Returns the module and the memories by name."""
    m = Module()
    m.submodules.phase = phase
    table, memories, ports = memory_table(params), {}, {}
    for name, kind, port in memory_ports(phase):
        if name not in memories:
            shape = table[name]
            memories[name] = m.submodules[name] = mem = Memory(shape=shape.shape, depth=shape.depth,
                                                               init=dict(init).get(name, []))
            ports[name] = mem.read_port(), mem.write_port(granularity=1 if shape.granular else None)
        read, write = ports[name]
        if kind == "read":
            m.d.comb += [read.addr.eq(port.addr), port.data.eq(read.data)]
        else:
            m.d.comb += [write.addr.eq(port.addr), write.en.eq(port.en), write.data.eq(port.data)]
    if "hash_in" in phase.signature.members:
        for q in range(hash_lanes(params)):
            mix = m.submodules[f"hash{q}"] = Mix32()
            m.d.comb += [mix.i.eq(phase.hash_in[q]), phase.hash_out[q].eq(mix.o)]
    return m, memories


def run_phase(m, phase, inputs=(), after=None, limit=10_000):
    """Set ``inputs`` (signal, value), start ``phase`` once and wait for ``done``, which must be a
    single pulse; ``after(ctx)`` runs a cycle after it. Returns the cycles from start to done."""
    result = {}

    async def testbench(ctx):
        for signal, value in inputs:
            ctx.set(signal, value)
        await ctx.tick()        # the phase leaves START for IDLE
        ctx.set(phase.start, 1)
        await ctx.tick()
        ctx.set(phase.start, 0)
        for cycle in range(1, limit):
            if ctx.get(phase.done):
                result["cycles"] = cycle
                break
            await ctx.tick()
        await ctx.tick()
        if after is not None:
            after(ctx)
        for _ in range(8):
            assert not ctx.get(phase.done)
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert "cycles" in result, "no done"
    return result["cycles"]


def words(params, layer, values):
    """``values`` of layer ``layer``'s neurons as P-lane words (zero-padded)."""
    P = params.P
    padded = np.zeros(params.blocks(layer) * P, dtype=np.int64)
    padded[:len(values)] = values
    return [list(map(int, padded[b * P:(b + 1) * P])) for b in range(params.blocks(layer))]


def bits(params, layer, values):
    """``values`` (0/1) of layer ``layer``'s neurons as P-bit words."""
    return [sum(int(v) << q for q, v in enumerate(word)) for word in words(params, layer, values)]


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
@pytest.mark.parametrize("top", [None, 2, 1], ids=["random", "ties", "all zero"])
def test_result_is_golden_classify(params, top):
    n = params.sizes[-1]
    counts = np.random.default_rng(n).integers(0, top or params.cfg.target_count, n)
    dut = DesireResult(params)
    m, _ = harness(dut, params, {f"c{params.L}": words(params, params.L, counts)})
    got = {}

    def after(ctx):
        got.update(pred=ctx.get(dut.pred), tie=ctx.get(dut.tie), counts=list(ctx.get(dut.counts)))

    assert run_phase(m, dut, after=after) == 2 * n       # a read and a compare per output
    assert got["counts"] == list(counts)
    assert (-1 if got["tie"] else got["pred"]) == int(golden.classify(counts))


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
@pytest.mark.parametrize("seed", range(3))
def test_output_desire_is_golden(params, seed):
    L, n = params.L, params.sizes[-1]
    rng = np.random.default_rng(seed)
    counts, label = rng.integers(0, params.cfg.target_count + 3, n), int(rng.integers(0, n))
    dut = DesireOutputDesire(params)
    m, memories = harness(dut, params, {f"c{L}": words(params, L, counts)})
    got = {}

    def after(ctx):
        for kind in ("care", "want"):
            got[kind] = [ctx.get(memories[f"{kind}{L}"].data[b]) for b in range(params.blocks(L))]

    assert run_phase(m, dut, [(dut.label, label)], after) == 2 * params.blocks(L)
    care, want = golden.output_desire(params.cfg, counts, label)
    assert got == {"care": bits(params, L, care), "want": bits(params, L, want)}


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
@pytest.mark.parametrize("train", [1, 0])
def test_masks_are_golden_dropout_masks(params, train):
    step = 12345
    dut = DesireMasks(params)
    m, memories = harness(dut, params)
    got = {}

    def after(ctx):
        for l in dut.mask_layers:
            got[l] = [ctx.get(memories[f"mask{l}"].data[b]) for b in range(params.blocks(l))]
        if "round_key" in dut.signature.members:
            got["round_key"] = ctx.get(dut.round_key)

    run_phase(m, dut, [(dut.train, train), (dut.step, step)], after)
    masks = golden.dropout_masks(params.cfg, step)
    for l in dut.mask_layers:    # inference: no mask is drawn (the forward pass ignores them)
        assert got[l] == (bits(params, l, masks[l]) if train else [0] * params.blocks(l)), l
    if "round_key" in got:
        assert got["round_key"] == mix32_int(params.cfg.seed ^ ROUNDING_SALT ^ step)
