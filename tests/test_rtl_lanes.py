"""Each combinational lane component of the RTL against the matching golden-model function,
under Amaranth's simulator, with random and extreme (saturation-edge) inputs."""

import numpy as np
import pytest
from amaranth.hdl import Signal, signed, unsigned
from amaranth.sim import Simulator

from mfsnn.golden import desire as golden
from mfsnn.golden.desire_config import DesireConfig
from mfsnn.golden.fixedpoint import select_sum
from mfsnn.golden.hashing import mix32
from mfsnn.golden.fixedpoint import saturate
from mfsnn.rtl.lanes import DesireLanes, EncoderLanes, Mix32, NeuronLanes, TraceLanes, UpdateLanes, saturate_value


def run_comb(dut, vectors, apply, collect):
    """Drive each vector through a combinational component; returns the collected outputs."""
    out = []

    async def tb(ctx):
        for vec in vectors:
            apply(ctx, vec)
            out.append(collect(ctx))

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    return out


def run_piped(dut, vectors, apply, collect):
    """Feed a vector every ``dut.interval`` cycles (default 1; with ``start`` high if the component
    has it) into a pipelined component and collect each result ``dut.latency`` cycles after its
    vector, so neighbouring vectors share the pipeline."""
    out = []
    interval = getattr(dut, "interval", 1)

    async def tb(ctx):
        for n in range(len(vectors) * interval + dut.latency):
            feed = n % interval == 0 and n // interval < len(vectors)
            if feed:
                apply(ctx, vectors[n // interval])
            if hasattr(dut, "start"):
                ctx.set(dut.start, feed)
            ready = n - dut.latency
            if ready >= 0 and ready % interval == 0:
                out.append(collect(ctx))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out


def run_held(dut, vectors, apply, collect):
    """Hold each vector on a pipelined component's inputs for ``dut.latency`` clock cycles, then
    collect: for recurrences whose next input is this output (a membrane over time steps)."""
    out = []

    async def tb(ctx):
        for vec in vectors:
            apply(ctx, vec)
            await ctx.tick().repeat(dut.latency)
            out.append(collect(ctx))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out


@pytest.mark.parametrize("shape", [signed(7), unsigned(6), signed(4), signed(3)])
def test_saturate_value_matches_golden_saturate_exhaustively(shape):
    """Every value of ``shape`` clamped to 4 signed bits, as golden ``saturate`` does (a shape no
    wider than 4 bits passes through)."""
    from amaranth.hdl import Module
    x = Signal(shape)
    y = Signal(signed(4))
    m = Module()
    m.d.comb += y.eq(saturate_value(x, 4))
    low, high = (-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed else (0, 1 << shape.width)
    values = list(range(low, high))

    def apply(ctx, v):
        ctx.set(x, v)

    got = run_comb(m, values, apply, lambda ctx: ctx.get(y))
    assert got == [int(saturate(np.int64(v), 4)) for v in values]


def test_mix32_vectors():
    keys = [0, 1, 2, 0xDEADBEEF, 0xFFFFFFFF] + list(np.random.default_rng(0).integers(0, 1 << 32, 50))
    dut = Mix32()
    assert dut.latency == 2
    got = run_piped(dut, keys, lambda ctx, k: ctx.set(dut.i, int(k)), lambda ctx: ctx.get(dut.o))
    assert got[:5] == [0x6B4ED927, 0xB48681B6, 0xE267B84C, 0x7FF0EADA, 0xFE64C182]
    assert got == [int(mix32(np.uint32(k))) for k in keys]


@pytest.mark.parametrize("lanes", [1, 4])
def test_encoder_matches_golden_encode(lanes):
    cfg = DesireConfig(topology=(lanes, 2), time_steps=25)
    rng = np.random.default_rng(lanes)
    pixel_sets = [np.array([0, 255, 1, 254][:lanes], dtype=np.uint8)] + [rng.integers(0, 256, lanes).astype(np.uint8)
                                                                          for _ in range(6)]
    dut = EncoderLanes(lanes)
    for pixels in pixel_sets:
        state = {"vin": [0] * lanes}
        steps = list(range(cfg.time_steps))

        def apply(ctx, _):
            for k in range(lanes):
                ctx.set(dut.pix[k], int(pixels[k]))
                ctx.set(dut.vin[k], state["vin"][k])

        def collect(ctx):
            state["vin"] = [ctx.get(dut.vin_next[k]) for k in range(lanes)]
            return [(ctx.get(dut.spike) >> k) & 1 for k in range(lanes)]

        got = np.array(run_comb(dut, steps, apply, collect), dtype=np.uint8)
        np.testing.assert_array_equal(got, golden.encode(cfg, pixels))


@pytest.mark.parametrize("decay_shift,frac_bits", [(2, 8), (1, 4), (3, 10)])
def test_trace_matches_golden(decay_shift, frac_bits):
    cfg = DesireConfig(topology=(4, 2), time_steps=30, decay_shift=decay_shift, trace_frac_bits=frac_bits)
    rng = np.random.default_rng(decay_shift)
    spikes = rng.integers(0, 2, (cfg.time_steps, 4)).astype(np.uint8)
    spikes[:, 0] = 1        # always on: the trace's maximum
    spikes[:, 1] = 0
    spikes[:3, 1] = 1       # decays to the 1..3 LSB residue that never decays
    dut = TraceLanes(4, trace_bits=cfg.trace_bits, decay_shift=decay_shift, frac_bits=frac_bits)
    state = {"x": [0] * 4}

    def apply(ctx, t):
        for k in range(4):
            ctx.set(dut.x[k], state["x"][k])
        ctx.set(dut.spike, int(sum(int(spikes[t, k]) << k for k in range(4))))

    def collect(ctx):
        state["x"] = [ctx.get(dut.x_next[k]) for k in range(4)]
        return state["x"]

    got = np.array(run_comb(dut, range(cfg.time_steps), apply, collect), dtype=np.int64)
    np.testing.assert_array_equal(got, golden._trace(cfg, spikes))


@pytest.mark.parametrize("weight_bits,train", [(24, True), (16, False), (8, True)])
def test_neuron_lanes_match_golden_forward(weight_bits, train):
    """A one-layer net 6 -> 4: the lanes iterated over T steps give golden ``forward``'s v and spikes,
    including membrane saturation at both ends (extreme weights)."""
    cfg = DesireConfig.for_weight_bits(weight_bits, topology=(6, 4), time_steps=24, dropout=(0.3, 0.3))
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    rng = np.random.default_rng(weight_bits)
    w = rng.integers(lo, hi + 1, (4, 6))
    w[0] = hi                          # drives V into positive saturation
    w[1] = lo                          # negative saturation
    spikes_in = np.ones((cfg.time_steps, 6), dtype=np.uint8)
    spikes_in[::3, 2:] = 0
    masks = [np.ones(6, bool), np.array([1, 1, 0, 1], bool)]
    fwd = golden.forward(cfg, [w], spikes_in, masks if train else None, train=train)
    currents = select_sum(spikes_in, w.T)
    threshold = cfg.train_threshold(1) if train else cfg.theta
    # saturation needs the membrane to run far: use a small threshold-free check of both edges
    dut = NeuronLanes(4, membrane_bits=cfg.membrane_bits, acc_bits=weight_bits + 4, decay_shift=cfg.decay_shift,
                      threshold_bits=cfg.membrane_bits)
    state = {"v": [0] * 4}
    keep = masks[1] if train else np.ones(4, bool)

    def apply(ctx, t):
        for k in range(4):
            ctx.set(dut.v[k], state["v"][k])
            ctx.set(dut.acc[k], int(currents[t, k]))
        ctx.set(dut.keep, int(sum(int(keep[k]) << k for k in range(4))))
        ctx.set(dut.threshold, threshold)

    def collect(ctx):
        state["v"] = [ctx.get(dut.v_next[k]) for k in range(4)]
        return state["v"] + [(ctx.get(dut.fire) >> k) & 1 for k in range(4)]

    assert dut.latency == 2
    got = np.array(run_held(dut, range(cfg.time_steps), apply, collect), dtype=np.int64)
    np.testing.assert_array_equal(got[:, :4], fwd.v[1])
    np.testing.assert_array_equal(got[:, 4:], fwd.spikes[1])


def test_neuron_lanes_saturate_membrane():
    """Direct edge: v at the VB-bit maximum plus a positive current stays at the maximum (no wrap)."""
    cfg = DesireConfig(topology=(2, 2))
    vb = cfg.membrane_bits
    vmax, vmin = (1 << (vb - 1)) - 1, -(1 << (vb - 1))
    dut = NeuronLanes(2, membrane_bits=vb, acc_bits=30, decay_shift=2, threshold_bits=vb)
    # both edges, then back inside the range: one vector per cycle, so neighbours share the pipeline
    vectors = [(vmax, (1 << 29) - 1, vmin, -(1 << 29)), (vmax, -(1 << 29), vmin, (1 << 29) - 1), (-8, 3, 8, -3)]

    previous = {"vec": None}

    def apply(ctx, vec):
        if previous["vec"] is not None:   # acc is due one cycle after the rest of its set
            ctx.set(dut.acc[0], previous["vec"][1]); ctx.set(dut.acc[1], previous["vec"][3])
        previous["vec"] = vec
        if vec is None:
            return
        ctx.set(dut.v[0], vec[0]); ctx.set(dut.v[1], vec[2])
        ctx.set(dut.keep, 0); ctx.set(dut.threshold, cfg.theta)

    # a trailing None lets the last vector's acc in
    got = run_piped(dut, vectors + [None], apply, lambda ctx: (ctx.get(dut.v_next[0]), ctx.get(dut.v_next[1])))[:-1]
    assert got == [(vmax, vmin), (vmax - (vmax >> 2) - (1 << 29), vmin - (vmin >> 2) + (1 << 29) - 1), (-6 + 3, 6 - 3)]


@pytest.mark.parametrize("mode", ["pow2", "exact"])
@pytest.mark.parametrize("lanes", [1, 4, 8])
def test_desire_lanes_match_golden_hidden_desire(mode, lanes):
    cfg = DesireConfig(topology=(1, lanes, 2), error_mode=mode, time_steps=20)
    wb = cfg.weight_bits
    lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    rng = np.random.default_rng(lanes)
    cases = []
    for n in range(40):
        w = rng.integers(lo, hi + 1, lanes)
        if n < 4:
            w[:] = [lo, hi, lo, hi][n]          # extreme sums
        counts = rng.integers(0, cfg.time_steps + 1, lanes)
        if n == 1:
            counts[:] = cfg.target_count        # e = 0 for wanting lanes
        care, want, mask = (rng.random(lanes) < 0.7, rng.random(lanes) < 0.5, rng.random(lanes) < 0.8)
        if n < 4:
            care[:] = mask[:] = True
        cases.append((w, counts, care, want, mask))
    dut = DesireLanes(lanes, weight_bits=wb, count_bits=cfg.count_bits, target_count=cfg.target_count,
                      error_mode=mode, sum_bits=cfg.desire_bits(2) + 2)

    def bits(a):
        return int(sum(int(x) << k for k, x in enumerate(a)))

    def apply(ctx, case):
        w, counts, care, want, mask = case
        for k in range(lanes):
            ctx.set(dut.w[k], int(w[k]))
            ctx.set(dut.count[k], int(counts[k]))
        ctx.set(dut.care, bits(care)); ctx.set(dut.want, bits(want)); ctx.set(dut.keep, bits(mask))

    tree = {1: 0, 4: 1, 8: 2}[lanes]                  # a register per 2 tree levels
    if mode == "pow2":                                  # 2 lane stages, one input set per cycle
        assert (dut.latency, dut.interval) == (2 + tree, 1)
    else:                                               # 5 bit planes of e < 32, the plane sums, their sum
        assert (dut.latency, dut.interval) == (5 + tree + 2, 5)
    got = run_piped(dut, cases, apply, lambda ctx: ctx.get(dut.term))
    assert len(got) == len(cases)
    for case, term in zip(cases, got):
        w, counts, care, want, mask = case
        total, _, _ = golden.hidden_desire(cfg, w.reshape(lanes, 1), care, want, counts, mask)
        assert term == int(total[0]), case


@pytest.mark.parametrize("lr_shift,rounding", [(17, "nearest"), (12, "nearest"), (9, "nearest"), (6, "nearest"),
                                               (17, "stochastic")])
def test_update_lanes_match_golden_update_layer(lr_shift, rounding):
    """SH = 5, 0, -3, -6 (left shift) and stochastic rounding; weights at both saturation edges."""
    lanes, T = 4, 20
    cfg = DesireConfig(topology=(1, lanes, 2), lr_shift=lr_shift, rounding=rounding, time_steps=T)
    sh = cfg.update_shift(0)
    wb = cfg.weight_bits
    lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    rng = np.random.default_rng(lr_shift)
    dut = UpdateLanes(lanes, weight_bits=wb, accum_bits=cfg.trace_bits + T.bit_length(),
                      max_left_shift=max(0, -sh), stochastic=rounding == "stochastic")
    cases = []
    for n in range(30):
        spikes = (rng.random((T, lanes)) < [0.0, 0.3, 0.9, 1.0]).astype(np.uint8)
        traces = rng.integers(0, 1 << cfg.trace_bits, (T, 1))
        if n == 0:
            traces[:] = (1 << cfg.trace_bits) - 1
        w = rng.integers(lo, hi + 1, lanes)
        w[:2] = [hi - 3, lo + 3] if n % 2 else [lo, hi]
        care, want, mask = rng.random(lanes) < 0.8, rng.random(lanes) < 0.5, rng.random(lanes) < 0.9
        if n % 2:
            want[:2] = [True, False]
        step, layer = int(rng.integers(0, 1000)), 1
        cases.append((spikes, traces, w, care, want, mask, step, layer))

    def bits(a):
        return int(sum(int(x) << k for k, x in enumerate(a)))

    previous = {"case": None}

    def apply(ctx, case):
        if rounding == "stochastic" and previous["case"] is not None:
            # offset is due one cycle after the rest of its set
            step, layer = previous["case"][6:]
            key = np.uint32(golden.mix32_int((cfg.seed ^ 0x5EED ^ step) & 0xFFFFFFFF))
            for k in range(lanes):
                ctx.set(dut.offset[k], int(mix32(key ^ np.uint32((layer << 24) ^ (k << 12) ^ 0))))
        previous["case"] = case
        if case is None:
            return
        spikes, traces, w, care, want, mask, step, layer = case
        accum = select_sum(spikes.T, traces)[:, 0]
        active = care & mask & (spikes.sum(axis=0) > 0)
        for k in range(lanes):
            ctx.set(dut.w[k], int(w[k]))
            ctx.set(dut.accum[k], int(accum[k]))
        ctx.set(dut.active, bits(active)); ctx.set(dut.want, bits(want)); ctx.set(dut.shift, sh)

    assert dut.latency == 3
    # a trailing None lets the last set's offset in
    got = run_piped(dut, cases + [None], apply, lambda ctx: [ctx.get(dut.w_next[k]) for k in range(lanes)])[:-1]
    assert len(got) == len(cases)
    for case, w_new in zip(cases, got):
        spikes, traces, w, care, want, mask, step, layer = case
        expected = golden.update_layer(cfg, w.reshape(lanes, 1), spikes, traces, care, want, mask, 0, step, layer)
        assert w_new == expected[:, 0].tolist(), case
