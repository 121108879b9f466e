# amaranth: UnusedElaboratable=no
"""``BlockOrder`` (rtl/stidi_block_order.py), the fc update's sorted post blocks, under Amaranth's
simulator against a pure-python reference: for every time t, ``needed`` = the blocks with a value
above t and the first ``needed`` positions hold exactly those blocks, in descending order of value.
Random fixed-seed value arrays with ties, all zero, all at the top, one block; values given with and
without gaps; several sorts on one instance (each prefix pass must leave a clean histogram), and a
reset in the middle of a sort (the next sort clears the histogram first). And the update that uses
it on the RTL: exactly the bound's words (bench/stidi_cycles.py)."""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from mfsnn.rtl.stidi_block_order import BlockOrder
from mfsnn.rtl.stidi_update import SORTED_ABOVE_BLOCKS


def reference(values):
    """({t: the set of blocks with a value above t} for t in 0..max - 1, max)."""
    values = [int(x) for x in values]
    top = max(values)
    return {t: {b for b, x in enumerate(values) if x > t} for t in range(top)}, top


def wait(ctx, dut, signal, what, limit):
    """Ticks until ``signal`` is high (a bounded wait that names what it waited for)."""
    async def go():
        for _ in range(limit):
            if ctx.get(signal):
                return
            await ctx.tick()
        raise AssertionError(f"BlockOrder: no {what} within {limit} cycles")
    return go()


async def give(ctx, dut, values, gaps, rng):
    """One pass: every block's value, one a cycle or (``gaps``) with random idle cycles."""
    for b, x in enumerate(values):
        while gaps and rng.random() < 0.4:
            ctx.set(dut.value_v, 0)
            await ctx.tick()
        ctx.set(dut.value_v, 1)
        ctx.set(dut.value, int(x))
        ctx.set(dut.value_block, b)
        ctx.set(dut.value_last, b == len(values) - 1)
        await ctx.tick()
    ctx.set(dut.value_v, 0)
    ctx.set(dut.value_last, 0)


async def sort(ctx, dut, values, gaps, rng):
    top_value = dut.top_value
    limit = 2 * (len(values) + top_value) + 16
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    await wait(ctx, dut, dut.can_count, "counting pass", top_value + 8)
    await give(ctx, dut, values, gaps, rng)
    await wait(ctx, dut, dut.can_place, "placing pass (prefix pass not over)", limit)
    await give(ctx, dut, values, gaps, rng)
    await wait(ctx, dut, dut.ready, "ready (placing pass not over)", limit)


async def check(ctx, dut, values):
    """``top``, and per t ``needed`` and the listed prefix, against ``reference``."""
    expected, top = reference(values)
    assert ctx.get(dut.top) == top, (values, ctx.get(dut.top))
    listed = []
    for pos in range(len([x for x in values if x])):
        ctx.set(dut.pos, pos)
        await ctx.tick()
        listed.append(ctx.get(dut.block_at))
    assert sorted(listed) == [b for b, x in enumerate(values) if x], (values, listed)
    order = [int(values[b]) for b in listed]
    assert order == sorted(order, reverse=True), (values, listed)
    for t in range(top):
        ctx.set(dut.t, t)
        await ctx.tick()
        needed = ctx.get(dut.needed)
        assert set(listed[:needed]) == expected[t], (values, t, needed, listed)


def run(cases, blocks, top_value, gaps, seed, reset_after=None):
    """Sorts each value array of ``cases`` in turn on one ``BlockOrder`` and checks it; with
    ``reset_after`` = (case, cycles), a reset cuts that case's sort short after so many cycles of its
    counting pass, and the case is sorted again."""
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    rst = Signal()
    dut = BlockOrder(blocks=blocks, top_value=top_value)
    m = Module()
    m.submodules.dut = ResetInserter({"sync": rst})(dut)

    async def bench(ctx):
        await ctx.tick()                                # START -> IDLE
        for n, values in enumerate(cases):
            if reset_after is not None and reset_after[0] == n:
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                await wait(ctx, dut, dut.can_count, "counting pass", top_value + 8)
                await give(ctx, dut, values[:reset_after[1]], False, rng)
                for _ in range(2):                      # the counts given are written, not yet cleared
                    await ctx.tick()
                ctx.set(rst, 1)
                await ctx.tick()
                ctx.set(rst, 0)
                await ctx.tick()
            await sort(ctx, dut, values, gaps, rng)
            await check(ctx, dut, values)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def random_values(rng, blocks, top_value, n):
    """``n`` arrays of ``blocks`` values in 0..top_value, drawn from a few distinct values (ties)."""
    for _ in range(n):
        pool = rng.integers(0, top_value + 1, int(rng.integers(1, 5)))
        yield rng.choice(pool, blocks)


@pytest.mark.parametrize("blocks,top_value", [(1, 5), (3, 2), (10, 25), (16, 102), (64, 102)])
@pytest.mark.parametrize("gaps", [False, True], ids=["back-to-back", "gaps"])
def test_block_order_matches_the_reference(blocks, top_value, gaps):
    seed = 1000 * blocks + top_value + gaps
    rng = np.random.default_rng(seed)
    cases = [np.zeros(blocks, int), np.full(blocks, top_value)] + list(random_values(rng, blocks, top_value, 4))
    cases.append(rng.integers(0, top_value + 1, blocks))    # mostly distinct values
    run(cases, blocks, top_value, gaps, seed)


@pytest.mark.parametrize("blocks,top_value", [(3, 5), (10, 25)])
def test_a_reset_during_a_sort_leaves_no_stale_count(blocks, top_value):
    """The cut sort has counted some blocks into the histogram; the next sort must not see them
    (stale counts matter only between the next sort's lowest and largest values: distinct values)."""
    seed = 7 * blocks + top_value
    rng = np.random.default_rng(seed)
    cases = [np.full(blocks, top_value), np.arange(blocks) % top_value + 1, rng.integers(1, top_value + 1, blocks)]
    run(cases, blocks, top_value, False, seed, reset_after=(1, blocks - 1))
    run(cases, blocks, top_value, False, seed, reset_after=(2, blocks))


@pytest.mark.parametrize("blocks,top_value", [(0, 5), (4, 0), (True, 5), (4, 2.0)])
def test_block_order_refuses_bad_sizes(blocks, top_value):
    with pytest.raises(TypeError, match="BlockOrder .* must be a positive integer"):
        BlockOrder(blocks=blocks, top_value=top_value)


def test_the_sorted_update_spends_exactly_the_bounds_words():
    """16-12-4 at P = 1 (12 post blocks: ``StidiFcUpdate`` takes its blocks from ``BlockOrder``), one
    error sample on the RTL, bit-exact checked by the bench: one ``BW_BLOCK`` cycle per (pre, post
    block) word of the bound, and the sort's states are there."""
    assert 12 > SORTED_ABOVE_BLOCKS
    path = Path(__file__).parent.parent / "bench" / "stidi_cycles.py"
    spec = importlib.util.spec_from_file_location("stidi_cycles", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(error=1, correct=0, infer=0, pretrain=0, candidates=20, seed=1)
    error = bench.measure("16-12-4", 1, args)["samples"][0]
    states = error["states"]
    assert error["bound"]["backward"] > 0 and any(state.startswith("BW_SORT") for state in states), states
    assert sum(n for state, n in states.items() if state.startswith("BW_BLOCK")) == error["bound"]["backward"]
