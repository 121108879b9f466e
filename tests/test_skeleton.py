# amaranth: UnusedElaboratable=no
"""The parts every training core shares (rtl/skeleton.py), under Amaranth's simulator: the sample
loader (either order, idle gating, one start per sample) and the weight bank (host port while
enabled, the core's ports otherwise, both memory kinds)."""

import random

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from mfsnn.rtl.skeleton import SampleLoader, WeightBank

LABEL = data.StructLayout({"label": unsigned(4), "train": 1})


def run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("label_first", [True, False])
def test_loader_takes_pixels_and_label_in_either_order(label_first):
    dut = SampleLoader(pixel_count=5, label_layout=LABEL)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.idle, 1)

        async def send_label(value):
            ctx.set(dut.labels.payload, {"label": value, "train": 1})
            ctx.set(dut.labels.valid, 1)
            await ctx.tick().until(dut.labels.ready)
            ctx.set(dut.labels.valid, 0)

        async def send_pixels(values):
            for value in values:
                ctx.set(dut.pixels.payload, value)
                ctx.set(dut.pixels.valid, 1)
                if ctx.get(dut.pixel.valid):
                    seen.append((ctx.get(dut.pixel.index), ctx.get(dut.pixel.value)))
                await ctx.tick()
            ctx.set(dut.pixels.valid, 0)

        for sample in range(2):
            pixels = [10 * sample + q for q in range(5)]
            if label_first:
                await send_label(sample + 3)
                assert not ctx.get(dut.start)
                await send_pixels(pixels)
            else:
                await send_pixels(pixels)
                assert not ctx.get(dut.start)
                await send_label(sample + 3)
            assert ctx.get(dut.start) == 1
            assert ctx.get(dut.label.label) == sample + 3
            # a full loader takes nothing more until the core has started
            assert not ctx.get(dut.pixels.ready) and not ctx.get(dut.labels.ready)
            await ctx.tick()
            assert not ctx.get(dut.start)
            # the label stays while the core works (not idle): no beat is taken
            ctx.set(dut.idle, 0)
            assert not ctx.get(dut.pixels.ready) and not ctx.get(dut.labels.ready)
            await ctx.tick()
            assert ctx.get(dut.label.label) == sample + 3
            ctx.set(dut.idle, 1)

    run(dut, testbench)
    assert seen == [(q, 10 * s + q) for s in range(2) for q in range(5)]


def test_loader_validates_pixel_count():
    with pytest.raises(ValueError, match="^pixel_count must be at least 1, not 0$"):
        SampleLoader(pixel_count=0, label_layout=LABEL)


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("single_port", [False, True])
def test_weight_bank_host_and_core_access(single_port, registered):
    seed = 20261126
    print(f"seed {seed}")
    rng = random.Random(seed)
    depths = [7, 3]
    word = data.ArrayLayout(signed(6), 2)
    dut = WeightBank(word_shape=word, memories=[(depth, single_port) for depth in depths], registered=registered)
    latency = dut.read_latency
    assert latency == (2 if registered else 1)
    model = [[[rng.randrange(-32, 32) for _ in range(2)] for _ in range(depth)] for depth in depths]

    async def testbench(ctx):
        # host loads every word, then reads every word back (``latency`` cycles later)
        ctx.set(dut.host_enable, 1)
        for layer, depth in enumerate(depths):
            for addr in range(depth):
                ctx.set(dut.wport.layer, layer)
                ctx.set(dut.wport.addr, addr)
                ctx.set(dut.wport.wdata, sum((v & 63) << (6 * q) for q, v in enumerate(model[layer][addr])))
                ctx.set(dut.wport.we, 1)
                await ctx.tick()
        ctx.set(dut.wport.we, 0)
        # the core's requests are ignored while the host has the bank
        ctx.set(dut.writes[0].en, 1)
        ctx.set(dut.writes[0].addr, 0)
        ctx.set(dut.writes[0].data, [0, 0])
        await ctx.tick()
        ctx.set(dut.writes[0].en, 0)
        # pipelined: one address a cycle, across the layer change; each word ``latency`` cycles later
        requests = [(layer, addr) for layer, depth in enumerate(depths) for addr in range(depth)]
        for n in range(len(requests) + latency):
            if n < len(requests):
                ctx.set(dut.wport.layer, requests[n][0])
                ctx.set(dut.wport.addr, requests[n][1])
            if n >= latency:
                layer, addr = requests[n - latency]
                got = ctx.get(dut.wport.rdata)
                assert [((got >> (6 * q)) & 63) for q in range(2)] == [v & 63 for v in model[layer][addr]], (layer, addr)
            await ctx.tick()
        # the core reads and writes through its own ports once the host lets go
        ctx.set(dut.host_enable, 0)
        for layer, depth in enumerate(depths):
            for addr in range(depth):
                new = [rng.randrange(-32, 32) for _ in range(2)]
                ctx.set(dut.writes[layer].addr, addr)
                ctx.set(dut.writes[layer].data, new)
                ctx.set(dut.writes[layer].en, 1)
                await ctx.tick()
                model[layer][addr] = new
            ctx.set(dut.writes[layer].en, 0)
            for addr in range(depth):
                ctx.set(dut.reads[layer].addr, addr)
                await ctx.tick().repeat(latency)
                assert list(ctx.get(dut.reads[layer].data)) == model[layer][addr]

    run(dut, testbench)


def test_weight_bank_needs_a_layer():
    with pytest.raises(ValueError, match="^a weight bank needs at least one layer$"):
        WeightBank(word_shape=unsigned(8), memories=[])
