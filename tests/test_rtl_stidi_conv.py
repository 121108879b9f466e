# amaranth: UnusedElaboratable=no
# (the constructor tests build components they never elaborate)
"""The conv and pooling pieces of the STiDi-BP core (rtl/stidi_conv.py, with ``MinPool`` of
rtl/stidi_lanes.py) against the matching functions of the integer golden model under Amaranth's
simulator: the conv tap addresses against ``build_stages``' patch tables, the per-step currents
against ``conv_currents``, pooling windows against ``min_pool``, the shared-weight update against
``conv_backward`` (and the accumulator and both weight rails at their bounds), the displacement
scatter against ``fixedpoint.scatter_sum_reference``. Random inputs come from fixed seeds (printed:
pytest shows them when a test fails)."""

import numpy as np
import pytest
from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mfsnn.golden import stidi_fixed as golden
from mfsnn.golden.fixedpoint import saturate, scatter_sum_reference
from mfsnn.golden.stidi import build_stages, parse_stidi_topology
from mfsnn.rtl.stidi_conv import ConvTap, ConvUpdateLanes, PoolScan, ScatterAdd, StepCurrents, conv_accumulator_bits
from mfsnn.rtl.stidi_lanes import MinPool
from test_rtl_stidi_lanes import rng_for, simulate

T = 101


def conv_stage(cin, side, k, cout):
    """The golden conv stage (host tables) of a ``c<k>x<cout>`` layer on a (cin, side, side) map (a
    c3 layer in front makes the cin channels)."""
    if cin == 1:
        return build_stages(parse_stidi_topology(f"{side}x{side}-c{k}x{cout}-10"))[1]
    return build_stages(parse_stidi_topology(f"{side}x{side}-c3x{cin}-c{k}x{cout}-10"))[2]


# ------------------------------------------------------------------------------------------------
# ConvTap: the window's pre neurons and the zero padding
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cin,side,k", [(1, 14, 3), (2, 14, 5), (1, 28, 5)])
def test_conv_tap_matches_golden_patches(cin, side, k):
    """Every (position, tap) of small maps (a random third of 28x28): pre and inside equal the
    golden patch table read through ``interior`` (padding = not inside)."""
    stage = conv_stage(cin, side, k, 2)
    where = {int(index): n for n, index in enumerate(stage.interior)}
    rng = rng_for(side * 10 + k)
    positions = [p for p in range(side * side) if side < 28 or rng.random() < 0.34]
    dut = ConvTap(channels=cin, height=side, width=side, kernel=k)
    assert dut.taps == stage.fan_in and dut.latency == 0
    bad = []

    async def tb(ctx):
        for p in positions:
            for q in range(dut.taps):
                ctx.set(dut.tap, q)
                ctx.set(dut.y, p // side)
                ctx.set(dut.x, p % side)
                ctx.set(dut.pos, p)
                index = int(stage.patches[p, q])
                inside = index in where
                got = (ctx.get(dut.inside), ctx.get(dut.pre) if inside else None)
                if got != (int(inside), where.get(index)):
                    bad.append((p, q, got, (inside, where.get(index))))

    simulate(dut, tb, clocked=False)
    assert not bad, bad[:5]


# ------------------------------------------------------------------------------------------------
# StepCurrents: C[t] of one conv neuron
# ------------------------------------------------------------------------------------------------

def run_step_currents(fan_in, taps, time_steps=T, lanes=1):
    """taps: (time, negative bits of the lanes) per window tap (the core's filter: time < T-1);
    returns C[0..T-1], each the list of the lanes' currents."""
    dut = StepCurrents(lanes=lanes, fan_in=fan_in, time_steps=time_steps)
    out = []

    async def tb(ctx):
        for _ in range(2):                       # twice: draining leaves the memory zero
            out.clear()
            for t, negative in taps:
                ctx.set(dut.add, 1)
                ctx.set(dut.add_t, t)
                ctx.set(dut.add_negative, negative)
                await ctx.tick()
            ctx.set(dut.add, 0)
            await ctx.tick()                     # the core's gap cycle
            for t in range(time_steps + 1):
                ctx.set(dut.drain, t < time_steps)
                ctx.set(dut.drain_t, min(t, time_steps - 1))
                await ctx.tick()
                out.append([ctx.get(dut.current[q]) for q in range(lanes)])   # C[t], drained in the cycle before
            ctx.set(dut.drain, 0)

    simulate(dut, tb)
    return out[:time_steps]


def test_step_currents_match_golden_conv_currents():
    """Random 2x14x14 spike maps and sign planes through a c3x3 layer: C of a few neurons equals
    golden ``conv_currents`` (only spikes before T-1 count, padding never)."""
    rng = rng_for(11)
    stage = conv_stage(2, 14, 3, 3)
    for trial in range(3):
        t_in = rng.integers(0, T + 1, size=(2, 14, 14))
        w_fwd = np.where(rng.random((stage.fan_in, 3)) < 0.5, 1, -1).astype(np.int64)
        current, positions = golden.conv_currents(t_in, w_fwd, stage, T)
        padded = np.full(stage.padded_size, T, dtype=np.int64)
        padded[stage.interior] = t_in.reshape(-1)
        for slot in rng.choice(len(positions), 3, replace=False):
            p, co = int(positions[slot]), int(rng.integers(0, 3))
            times = padded[stage.patches[p]]
            taps = [(int(t), int(w_fwd[q, co] < 0)) for q, t in enumerate(times) if t < T - 1]
            got = run_step_currents(stage.fan_in, taps)
            assert [c[0] for c in got] == current[co, slot].tolist(), (trial, p, co)


@pytest.mark.parametrize("lanes,cout", [(2, 3), (4, 3), (4, 8)])
def test_step_currents_lanes_match_golden_conv_currents(lanes, cout):
    """P lanes = P output channels of one position, which share the window's spikes and differ in
    their sign bits (a channel block past the channels has padding lanes): every lane's C equals
    golden ``conv_currents`` of its channel."""
    rng = rng_for(20 + lanes + cout)
    stage = conv_stage(2, 14, 3, cout)
    t_in = rng.integers(0, T + 1, size=(2, 14, 14))
    w_fwd = np.where(rng.random((stage.fan_in, cout)) < 0.5, 1, -1).astype(np.int64)
    current, positions = golden.conv_currents(t_in, w_fwd, stage, T)
    padded = np.full(stage.padded_size, T, dtype=np.int64)
    padded[stage.interior] = t_in.reshape(-1)
    for slot in rng.choice(len(positions), 2, replace=False):
        p = int(positions[slot])
        times = padded[stage.patches[p]]
        for block in range(-(-cout // lanes)):
            channels = range(block * lanes, min(cout, block * lanes + lanes))
            taps = [(int(t), sum(int(w_fwd[q, co] < 0) << (co - block * lanes) for co in channels))
                    for q, t in enumerate(times) if t < T - 1]
            got = run_step_currents(stage.fan_in, taps, lanes=lanes)
            for co in channels:
                assert [c[co - block * lanes] for c in got] == current[co, slot].tolist(), (p, co)


@pytest.mark.parametrize("negative", [0, 1])
def test_step_currents_extreme_all_taps_one_step(negative):
    """Every one of K = 200 taps at the same step, back to back (the transparent read adds them all):
    C reaches +-K, the width's bound, and the T-2 step (the last that counts) works."""
    got = run_step_currents(200, [(T - 2, negative)] * 200)
    expected = [0] * T
    expected[T - 2] = -200 if negative else 200
    assert [c[0] for c in got] == expected


# ------------------------------------------------------------------------------------------------
# PoolScan + MinPool: min-time pooling with the first-argmin rule
# ------------------------------------------------------------------------------------------------

class _PoolHarness(wiring.Component):
    """PoolScan walking a (C, H, W) map held in a memory whose words hold ``lanes`` channels at one
    position (a conv stage's at P lanes), its taps (their channel's lane) into MinPool, as the core
    wires them."""

    def __init__(self, channels, side, k, times, lanes=1):
        self.scan = PoolScan(lanes=lanes, channels=channels, height=side, width=side, kernel=k)
        self.pool = MinPool(lanes=1, kernel=k, time_steps=T)
        blocks = -(-channels // lanes)
        words = np.full((blocks * lanes, side * side), T, dtype=np.int64)     # padding lanes: silent
        words[:channels] = np.asarray(times).reshape(channels, -1)
        self.words = words.reshape(blocks, lanes, -1).transpose(0, 2, 1).reshape(-1, lanes).tolist()
        self.lanes = lanes
        super().__init__({"start": In(1), "advance": In(1), "pre": Out(range(len(self.words))),
                          "lane": Out(range(lanes)), "min_time": Out(range(T + 1)), "argmin": Out(range(k * k))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.scan, m.submodules.pool = self.scan, self.pool
        m.submodules.map = mem = Memory(shape=data.ArrayLayout(range(T + 1), self.lanes), depth=len(self.words),
                                        init=self.words)
        read = mem.read_port()
        first = Signal(name="first_d")                    # the tap's time arrives one cycle later
        lane = Signal(range(self.lanes), name="lane_d")
        m.d.sync += [first.eq(self.scan.first), lane.eq(self.scan.lane)]
        m.d.comb += [self.scan.start.eq(self.start), self.scan.advance.eq(self.advance), read.addr.eq(self.scan.pre),
                     self.pre.eq(self.scan.pre), self.lane.eq(self.scan.lane),
                     self.pool.time[0].eq(Array(read.data[q] for q in range(self.lanes))[lane]),
                     self.pool.first.eq(first), self.min_time.eq(self.pool.min_time[0]),
                     self.argmin.eq(self.pool.argmin[0])]
        return m


@pytest.mark.parametrize("channels,side,k,seed,lanes", [(2, 8, 2, 1, 1), (1, 6, 3, 2, 1), (3, 14, 2, 3, 1),
                                                       (3, 8, 2, 4, 2), (5, 6, 2, 5, 4), (8, 6, 3, 6, 4)])
def test_pooling_matches_golden_min_pool(channels, side, k, seed, lanes):
    """Random times drawn from few values (many ties) plus all-silent windows: the walked pre
    neurons are the golden window order, and the pooled times and argmins equal ``min_pool``; also
    on a map whose words hold P channels (padding lanes never walked)."""
    rng = rng_for(seed)
    t_in = rng.choice([3, 7, T - 1, T], size=(channels, side, side))
    t_in[0, :k, :k] = T                                   # a silent window: argmin tap 0
    t_in[-1, -k:, -k:] = 5                                # all tied: the first tap
    out_shape = (channels, side // k, side // k)
    want_t, want_arg = golden.min_pool(t_in, k, out_shape)
    dut = _PoolHarness(channels, side, k, t_in.reshape(-1), lanes)
    order = np.arange(t_in.size).reshape(channels, side // k, k, side // k, k).transpose(0, 1, 3, 2, 4).reshape(-1)
    chan, pos = np.divmod(order, side * side)         # neuron -> (word, lane) of the P-channel words
    order = list(zip(((chan // lanes) * side * side + pos).tolist(), (chan % lanes).tolist()))
    walked, times, args = [], [], []

    async def tb(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        n = t_in.size
        for c in range(n + 2):
            # tap c is read in cycle c, its time reaches MinPool in c + 1, the window's result is
            # out in the cycle after that of its last tap: (w + 1) * k*k + 1
            ctx.set(dut.advance, c < n)
            if c < n:
                walked.append((ctx.get(dut.pre), ctx.get(dut.lane)))
            if c > 1 and (c - 1) % (k * k) == 0:
                times.append(ctx.get(dut.min_time))
                args.append(ctx.get(dut.argmin))
            await ctx.tick()

    simulate(dut, tb)
    assert walked == order
    assert times == want_t.reshape(-1).tolist()
    assert args == want_arg.reshape(-1).tolist()


def test_pool_scan_rejects_bad_geometry():
    with pytest.raises(ValueError, match="multiple"):
        PoolScan(channels=1, height=7, width=8, kernel=2)


# ------------------------------------------------------------------------------------------------
# ConvUpdateLanes: the shared-weight update, one saturation per weight
# ------------------------------------------------------------------------------------------------

def run_conv_update(dut, weight, rows, lr_shift):
    """rows: (t_pre, t_post, sign, level) per position; returns (A, w_next)."""
    out = {}

    async def tb(ctx):
        ctx.set(dut.lr_shift, lr_shift)
        ctx.set(dut.w[0], weight)
        for n, (t_pre, t_post, s, lvl) in enumerate(rows):
            ctx.set(dut.valid, 1)
            ctx.set(dut.first, n == 0)
            ctx.set(dut.t_pre[0], t_pre)
            ctx.set(dut.t_post[0], t_post)
            ctx.set(dut.sign[0], s)
            ctx.set(dut.level[0], lvl)
            ctx.set(dut.keep, 1)
            await ctx.tick()
        ctx.set(dut.valid, 0)
        for _ in range(dut.latency):
            await ctx.tick()
        out["total"], out["w_next"] = ctx.get(dut.total[0]), ctx.get(dut.w_next[0])

    simulate(dut, tb)
    return out["total"], out["w_next"]


def random_conv_update(rng, cout, weight_bits, lr_shift):
    """A random 2x14x14 -> c3x<cout> layer (errors on a third of the posts, some pres silent or
    dropped), its weights before and after golden ``conv_backward``, and the padded pre times."""
    stage = conv_stage(2, 14, 3, cout)
    w = rng.integers(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1), size=(stage.fan_in, cout))
    s = np.where(rng.random((cout, 14, 14)) < 0.33, rng.choice([-1, 1], size=(cout, 14, 14)), 0)
    lvl = np.where(s != 0, rng.integers(0, 7, size=(cout, 14, 14)), 0)
    t_post = rng.integers(0, T, size=(cout, 14, 14))
    t_pre = rng.integers(0, T + 1, size=(2, 14, 14))
    pre_ok = (t_pre < T) & (rng.random((2, 14, 14)) < 0.9)
    new = w.copy()
    golden.conv_backward(new, s, lvl, t_post, t_pre, pre_ok, stage, False, T, weight_bits, lr_shift)
    padded = np.full(stage.padded_size, T, dtype=np.int64)
    padded[stage.interior] = np.where(pre_ok, t_pre, T).reshape(-1)
    return stage, w, new, s, lvl, t_post, padded


@pytest.mark.parametrize("seed,weight_bits,lr_shift", [(1, 16, 4), (2, 8, 0), (3, 16, 0), (4, 10, 2)])
def test_conv_update_matches_golden_conv_backward(seed, weight_bits, lr_shift):
    """A random 2x14x14 -> c3x3 layer (errors on a third of the posts, some pres silent or dropped):
    every weight's w_next equals golden ``conv_backward``'s new weight (8-bit weights with R = 0
    saturate at both rails)."""
    rng = rng_for(seed)
    cout, P = 3, 196
    stage, w, new, s, lvl, t_post, padded = random_conv_update(rng, cout, weight_bits, lr_shift)
    K = stage.fan_in
    dut = ConvUpdateLanes(positions=P, weight_bits=weight_bits, levels=6, max_lr_shift=15, time_steps=T)
    assert dut.latency == 3 and dut.acc_bits == conv_accumulator_bits(P, T, 6)
    saturated = 0
    for co in range(cout):
        for q in rng.choice(K, 4, replace=False):
            rows = [(int(padded[stage.patches[p, q]]), int(t_post.reshape(cout, -1)[co, p]),
                     int(s.reshape(cout, -1)[co, p]), int(lvl.reshape(cout, -1)[co, p])) for p in range(P)]
            _, got = run_conv_update(dut, int(w[q, co]), rows, lr_shift)
            assert got == new[q, co], (co, q)
            saturated += abs(int(new[q, co])) >= (1 << (weight_bits - 1)) - 1
    if weight_bits == 8 and lr_shift == 0:
        assert saturated > 0


@pytest.mark.parametrize("seed,lanes,cout", [(5, 2, 3), (6, 4, 3), (7, 4, 4)])
def test_conv_update_lanes_match_golden_conv_backward(seed, lanes, cout):
    """P lanes = the P output channels of a weight word (c_b, tap), which share the tap's pre at every
    position (one t_pre for all lanes) and have their own post, error and weight: every lane's w_next
    equals golden ``conv_backward``'s; a padding lane (error 0) keeps its weight."""
    rng = rng_for(seed)
    weight_bits, lr_shift = 10, 1
    stage, w, new, s, lvl, t_post, padded = random_conv_update(rng, cout, weight_bits, lr_shift)
    K, positions = stage.fan_in, 196
    dut = ConvUpdateLanes(lanes=lanes, positions=positions, weight_bits=weight_bits, levels=6, max_lr_shift=15,
                          time_steps=T)
    flat = [x.reshape(cout, -1) for x in (t_post, s, lvl)]
    for block in range(-(-cout // lanes)):
        channels = [block * lanes + q for q in range(lanes)]
        live = [co < cout for co in channels]
        for q in rng.choice(K, 3, replace=False):
            weights = [int(w[q, co]) if ok else 77 for co, ok in zip(channels, live)]
            got = {}

            async def tb(ctx):
                ctx.set(dut.lr_shift, lr_shift)
                for lane, weight in enumerate(weights):
                    ctx.set(dut.w[lane], weight)
                for p in range(positions):
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.first, p == 0)
                    ctx.set(dut.keep, (1 << lanes) - 1)
                    for lane, (co, ok) in enumerate(zip(channels, live)):
                        ctx.set(dut.t_pre[lane], int(padded[stage.patches[p, q]]))
                        ctx.set(dut.t_post[lane], int(flat[0][co, p]) if ok else 0)
                        ctx.set(dut.sign[lane], int(flat[1][co, p]) if ok else 0)
                        ctx.set(dut.level[lane], int(flat[2][co, p]) if ok else 0)
                    await ctx.tick()
                ctx.set(dut.valid, 0)
                for _ in range(dut.latency):
                    await ctx.tick()
                got["w"] = [ctx.get(dut.w_next[lane]) for lane in range(lanes)]

            simulate(dut, tb)
            want = [int(new[q, co]) if ok else 77 for co, ok in zip(channels, live)]
            assert got["w"] == want, (block, q)


def test_conv_accumulator_widths_of_the_spec():
    """§3: s24 for the 28x28 conv layer, s22 for 14x14 (T = 101, Q = 6); W - A one bit wider (s25)."""
    assert conv_accumulator_bits(28 * 28, T, 6) == 24
    assert conv_accumulator_bits(14 * 14, T, 6) == 22
    assert ConvUpdateLanes(positions=784, weight_bits=16).diff_bits == 25


@pytest.mark.parametrize("sign,weight", [(-1, (1 << 15) - 1), (1, -(1 << 15)), (-1, -(1 << 15)), (1, (1 << 15) - 1)])
def test_conv_update_extremes_reach_the_bounds(sign, weight):
    """Every one of 28*28 positions with the largest step ((T - 0) << Q, R = 0) and one sign: A sits
    exactly at the spec's bound +-P*(T << Q) (never wraps), and W - A saturates at the rail it heads
    for (from either rail)."""
    P = 28 * 28
    dut = ConvUpdateLanes(positions=P, weight_bits=16, levels=6, max_lr_shift=15, time_steps=T)
    total, w_next = run_conv_update(dut, weight, [(0, T, sign, 6)] * P, 0)
    bound = P * (T << 6)
    assert total == sign * bound
    assert w_next == saturate(np.int64(weight - sign * bound), 16)


# ------------------------------------------------------------------------------------------------
# ScatterAdd: D[pre] += term, exact
# ------------------------------------------------------------------------------------------------

class _ScatterHarness(wiring.Component):
    def __init__(self, depth, d_bits, term_bits):
        self.adder = ScatterAdd(depth=depth, d_bits=d_bits, term_bits=term_bits)
        self.depth, self.d_bits = depth, d_bits
        super().__init__({"valid": In(1), "addr": In(range(depth)), "term": In(signed(term_bits)),
                          "peek": In(range(depth)), "data": Out(signed(d_bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.adder = a = self.adder
        m.submodules.mem = mem = Memory(shape=signed(self.d_bits), depth=self.depth, init=[])
        write = mem.write_port()
        read = mem.read_port(transparent_for=(write,))
        peek = mem.read_port(domain="comb")
        m.d.comb += [a.valid.eq(self.valid), a.addr.eq(self.addr), a.term.eq(self.term),
                     read.addr.eq(a.read.addr), a.read.data.eq(read.data),
                     write.addr.eq(a.write.addr), write.data.eq(a.write.data), write.en.eq(a.write.en),
                     peek.addr.eq(self.peek), self.data.eq(peek.data)]
        return m


def test_scatter_add_matches_golden_scatter_sum():
    """Terms of +-(2**15 << 6) into 16 bins, runs of the same bin back to back (the read-during-write
    case): the memory equals ``scatter_sum_reference``, including bins at the D width's bound."""
    rng = rng_for(5)
    depth, term_bits = 16, 23
    n = 300
    addr = np.repeat(rng.integers(0, depth, size=n // 3), 3)
    big = (1 << 15) << 6
    terms = rng.choice([-big, big - 1, 0, 1, -1, 12345], size=len(addr))
    terms[addr == 3] = -big                                    # bin 3: the most negative sum
    want = scatter_sum_reference(addr[:, None], terms[:, None], depth)
    d_bits = int(np.abs(want).max()).bit_length() + 1
    dut = _ScatterHarness(depth, d_bits, term_bits)
    got = []

    async def tb(ctx):
        for a, t in zip(addr.tolist(), terms.tolist()):
            ctx.set(dut.valid, 1)
            ctx.set(dut.addr, a)
            ctx.set(dut.term, t)
            await ctx.tick()
        ctx.set(dut.valid, 0)
        await ctx.tick()
        for a in range(depth):
            ctx.set(dut.peek, a)
            got.append(ctx.get(dut.data))

    simulate(dut, tb)
    assert got == want.tolist()


# ------------------------------------------------------------------------------------------------
# constructors
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build,error,text", [
    (lambda: ConvTap(channels=1, height=4, width=4, kernel=2), ValueError, "kernel must be odd, not 2"),
    (lambda: ConvTap(channels=0, height=4, width=4, kernel=3), ValueError, "channels must be >= 1, not 0"),
    (lambda: StepCurrents(fan_in="9"), TypeError, "fan_in must be an integer, not '9'"),
    (lambda: StepCurrents(lanes=0, fan_in=9), ValueError, "lanes must be >= 1, not 0"),
    (lambda: PoolScan(lanes=0, channels=1, height=4, width=4, kernel=2), ValueError, "lanes must be >= 1, not 0"),
    (lambda: ConvUpdateLanes(positions=0), ValueError, "positions must be >= 1, not 0"),
    (lambda: ScatterAdd(depth=4, d_bits=1, term_bits=4), ValueError, "d_bits must be >= 2, not 1"),
])
def test_constructor_errors(build, error, text):
    with pytest.raises(error, match=text):
        build()
