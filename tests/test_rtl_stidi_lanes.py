# amaranth: UnusedElaboratable=no
# (as in Amaranth's own tests: the constructor and width tests build components they never elaborate)
"""Each STiDi-BP lane component (rtl/stidi_lanes.py) against the matching function of the integer golden
model under Amaranth's simulator: random inputs from fixed seeds (printed, shown when a test fails)
plus the extremes of docs/golden-spec-stidi.md (weight rails, largest and smallest shifts, lvl 0 and Q,
D = 0, silent and tied pooling windows, the L2 guard boundary, spike times T-1 and T)."""

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from mfsnn.golden import stidi_fixed as golden
from mfsnn.golden.fixedpoint import bit_length
from mfsnn.golden.stidi import encoding_table, make_stidi_learner
from mfsnn.rtl.stidi_lanes import (DisplacementLanes, EncoderRom, ErrorLevelLanes, FcUpdateLanes,
                                   IntegrateLanes, L2Normaliser, LeadingOne, MinPool, SignAccumulateLanes)
from mfsnn.rtl.synth_check import forbidden_cells, yosys_command

T = 101
G = golden.NORM_GUARD


def rng_for(seed):
    print(f"seed {seed}")          # shown by pytest when the test fails
    return np.random.default_rng(seed)


def simulate(dut, testbench, clocked=True):
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def run_piped(dut, vectors, apply, collect):
    """One vector per clock cycle; each result is collected ``dut.latency`` cycles after its vector
    (a combinational piece, latency 0, runs without a clock)."""
    out = []

    async def tb(ctx):
        for n in range(len(vectors) + dut.latency):
            if n < len(vectors):
                apply(ctx, vectors[n])
            if n >= dut.latency:
                out.append(collect(ctx))
            if dut.latency:
                await ctx.tick()

    simulate(dut, tb, clocked=dut.latency > 0)
    return out


def bits(flags):
    return int(sum(int(f) << k for k, f in enumerate(flags)))


def unbits(word, n):
    return [(int(word) >> k) & 1 for k in range(n)]


# ------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes,time_steps", [(1, T), (4, T), (3, 20)])
def test_encoder_rom_matches_golden_table(lanes, time_steps):
    """Every pixel value, P per cycle, against ``encoding_table`` (p = 0 -> Tend, 255 -> 0)."""
    pixels = list(range(256)) + [0] * (-256 % lanes)
    dut = EncoderRom(lanes=lanes, time_steps=time_steps)
    assert dut.latency == 1
    sets = [pixels[n:n + lanes] for n in range(0, len(pixels), lanes)]
    got = run_piped(dut, sets, lambda ctx, v: ctx.set(dut.pixel, v), lambda ctx: list(ctx.get(dut.time)))
    np.testing.assert_array_equal(np.concatenate(got)[:256], encoding_table(time_steps))


def test_encoder_rom_matches_golden_encode_of_an_image():
    """A random 28x28 image through the learner's ``encode`` (784 inputs) and through 4 ROM lanes."""
    rng = rng_for(11)
    image = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    image[0, :4] = [0, 255, 1, 254]
    expected = make_stidi_learner("fixed", "784-10", 1).encode(image[None])[0].reshape(-1)
    dut = EncoderRom(lanes=4)
    flat = image.reshape(-1)
    sets = [flat[n:n + 4].tolist() for n in range(0, 784, 4)]
    got = run_piped(dut, sets, lambda ctx, v: ctx.set(dut.pixel, v), lambda ctx: list(ctx.get(dut.time)))
    np.testing.assert_array_equal(np.concatenate(got), expected)


# ------------------------------------------------------------------------------------------------
# Forward
# ------------------------------------------------------------------------------------------------

def random_layer(rng, fan_in, fan_out):
    """Pre spike times with T-1 and T (silent) among them, and latent weights with 0 (sign +1)."""
    t_in = rng.integers(0, T + 1, fan_in)
    t_in[:3] = [0, T - 1, T]
    w = rng.integers(-50, 50, (fan_in, fan_out))
    w[0, 0] = 0
    return t_in, w


@pytest.mark.parametrize("seed", [1, 2])
def test_sign_accumulate_matches_golden_fc_currents(seed):
    """Summing the sign bits of the pres spiking at t gives ``fc_currents``' C[:, t] (binary forward)."""
    rng = rng_for(seed)
    lanes, fan_in = 4, 40
    t_in, w = random_layer(rng, fan_in, lanes)
    expected = golden.fc_currents(t_in, golden.forward_weights(w, "binary", 0), T)
    dut = SignAccumulateLanes(lanes=lanes, fan_in=fan_in)
    assert dut.latency == 0 and dut.current_bits == 7
    got = np.zeros((lanes, T), np.int64)

    async def tb(ctx):
        ctx.set(dut.spike, 1)
        for t in range(T - 1):          # golden drops spikes at T-1: they cannot change a membrane
            delta = [0] * lanes
            for j in np.flatnonzero(t_in == t):
                ctx.set(dut.delta, delta)
                ctx.set(dut.negative, bits(w[j] < 0))       # the MSB of each latent weight
                delta = list(ctx.get(dut.delta_next))
            got[:, t] = delta
        ctx.set(dut.spike, 0)                               # no arrival: delta passes unchanged
        ctx.set(dut.delta, [5, -5, 0, 1])
        ctx.set(dut.negative, 0b1010)
        assert list(ctx.get(dut.delta_next)) == [5, -5, 0, 1]

    simulate(dut, tb, clocked=False)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_integrate_matches_golden_integrate(seed):
    """T steps of the lanes (state fed back) give golden ``integrate``'s I, U and first-crossing times.

    Lane 0: every pre +1 at t = 0, so U reaches the top of its range F*(T-1) at T-1, exactly the
    threshold; lane 1: every pre -1 at t = 0 (the bottom of the range, never fires); lanes 2-3 random.
    """
    rng = rng_for(seed)
    lanes, fan_in = 4, 30
    t_in, w = random_layer(rng, fan_in, lanes)
    w[:, 2] = np.abs(w[:, 2])                       # mostly excitatory: fires somewhere in the window
    current = golden.fc_currents(t_in, golden.forward_weights(w, "binary", 0), T)
    current[0] = current[1] = 0
    current[0, 0], current[1, 0] = fan_in, -fan_in
    dut = IntegrateLanes(lanes=lanes, fan_in=fan_in, time_steps=T)
    threshold = fan_in * (T - 1)                    # reached only by lane 0, at T-1
    for threshold in (threshold, int(rng.integers(1, 200))):
        i_ref, u_ref, times_ref = golden.integrate(current, threshold, T)
        i_got, u_got = np.zeros((T, lanes), np.int64), np.zeros((T, lanes), np.int64)

        async def tb(ctx):
            i, u, t_fire = [0] * lanes, [0] * lanes, [T] * lanes
            ctx.set(dut.threshold, threshold)
            for t in range(T):
                ctx.set(dut.i, i); ctx.set(dut.u, u); ctx.set(dut.t_fire, t_fire); ctx.set(dut.t, t)
                ctx.set(dut.delta, current[:, t].tolist())
                fired = unbits(ctx.get(dut.fired), lanes)
                i, u = list(ctx.get(dut.i_next)), list(ctx.get(dut.u_next))
                new_fire = list(ctx.get(dut.t_fire_next))
                assert fired == [int(a != b) for a, b in zip(new_fire, t_fire)]
                t_fire = new_fire
                i_got[t], u_got[t] = i, u
            np.testing.assert_array_equal(t_fire, times_ref)

        simulate(dut, tb, clocked=False)
        np.testing.assert_array_equal(i_got, i_ref)
        np.testing.assert_array_equal(u_got, u_ref)
    assert u_ref[T - 1, 0] == fan_in * (T - 1) and u_ref[T - 1, 1] == -fan_in * (T - 1)
    assert times_ref[1] == T and times_ref[2] < T


@pytest.mark.parametrize("fan_in,current_bits,membrane_bits", [(784, 11, 18), (128, 9, 15), (25, 6, 13),
                                                                (200, 9, 16)])
def test_integrate_widths_follow_the_spec_table(fan_in, current_bits, membrane_bits):
    dut = IntegrateLanes(lanes=1, fan_in=fan_in)
    assert (dut.current_bits, dut.membrane_bits, dut.time_bits) == (current_bits, membrane_bits, 7)
    assert (len(dut.i[0]), len(dut.u[0]), len(dut.t)) == (current_bits, membrane_bits, 7)


# ------------------------------------------------------------------------------------------------
# Leading one, levels, L2 norm
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [1, 5, 8, 31, 33])
def test_leading_one_matches_golden_bit_length(width):
    rng = rng_for(width)
    values = [0, 1, (1 << width) - 1] + [1 << b for b in range(width)] + [(1 << b) - 1 for b in range(1, width)]
    values += [int(v) for v in rng.integers(0, 1 << width, 40, dtype=np.uint64)]
    dut = LeadingOne(width=width)
    got = run_piped(dut, values, lambda ctx, x: ctx.set(dut.x, x),
                    lambda ctx: (ctx.get(dut.length), ctx.get(dut.msb), ctx.get(dut.nonzero)))
    length = bit_length(np.array(values, dtype=np.int64))
    assert [g[0] for g in got] == length.tolist()
    assert [g[1] for g in got] == np.maximum(length - 1, 0).tolist()
    assert [g[2] for g in got] == (length > 0).astype(int).tolist()


def l2_offsets_cases(rng, words):
    """Offset sets m - emax (each with its 0) at and around the guard: -G counts, -G-1 does not."""
    cases = [[0], [0] * words, [0, -G], [0, -G - 1], [0] + [-G] * (words - 1), [0] + [-G - 1] * (words - 1),
             [0, -1, -1, -1], [-1, 0, -2, -3, -G, -G - 1, -G - 2, -20]]
    for _ in range(12):
        n = int(rng.integers(1, words + 1))
        offsets = rng.integers(-G - 3, 1, n)
        offsets[rng.integers(0, n)] = 0
        cases.append(offsets.tolist())
    return cases


@pytest.mark.parametrize("lanes", [1, 4])
def test_l2_normaliser_matches_golden_l2_shift(lanes):
    """S and r over whole error vectors, P offsets per cycle with ``first`` at each vector's start;
    128 equal errors fill S's 2G + 8 = 24 bits exactly."""
    rng = rng_for(20 + lanes)
    words = 128
    dut = L2Normaliser(lanes=lanes, words=words, offset_bits=6)
    assert dut.latency == 1 and dut.total_bits == 24
    results = []

    async def tb(ctx):
        for offsets in l2_offsets_cases(rng, words):
            padded = offsets + [0] * (-len(offsets) % lanes)
            for n in range(0, len(padded), lanes):
                ctx.set(dut.offset, padded[n:n + lanes])
                ctx.set(dut.counted, bits(n + k < len(offsets) for k in range(lanes)))
                ctx.set(dut.first, n == 0)
                await ctx.tick()
            results.append((offsets, ctx.get(dut.total), ctx.get(dut.shift)))

    simulate(dut, tb)
    for offsets, total, shift in results:
        spec_sum = sum(1 << 2 * (o + G) for o in offsets if o >= -G)    # §9.6's S
        assert total == spec_sum, offsets
        assert shift == golden.l2_shift(np.array(offsets, np.int64)), offsets
    assert max(shift for _, _, shift in results) == 3        # 128 equal errors: r = log2(128)/2 = 3


def displacement_cases(rng, n, d_bits):
    """D vectors (with their neurons' spike times) for ``quantize_error``: random magnitudes over the
    whole range, the clip rule (t = 0, D < 0), all zero, both rails, the guard boundary, equal errors."""
    lo, hi = -(1 << (d_bits - 1)), (1 << (d_bits - 1)) - 1
    cases = []
    for _ in range(6):
        d = rng.choice([-1, 1], n) * (rng.integers(0, 1 << 30, n) >> rng.integers(30 - d_bits + 1, 31, n))
        d[rng.random(n) < 0.2] = 0
        times = rng.integers(0, T, n)
        times[rng.random(n) < 0.3] = 0
        cases.append((d, times))
    cases.append((np.zeros(n, np.int64), rng.integers(0, T, n)))                              # D = 0
    cases.append((np.where(np.arange(n) % 2, lo, hi), np.full(n, 5)))                          # the rails
    top = 1 << 17
    cases.append((np.array([top, top >> G, top >> (G + 1), -(top >> G), 1] + [0] * (n - 5)),   # guard edge
                  np.full(n, 7)))
    cases.append((np.array([-top] + [top >> G] * (n - 1)), np.full(n, T - 1)))
    cases.append((np.full(n, -300), np.arange(n) % 3))                                        # equal; clip
    return cases


@pytest.mark.parametrize("norm,levels", [("l2", 6), ("max", 3), ("l2", 0)])
def test_error_levels_match_golden_quantize_error(norm, levels):
    """The core's three passes over a stage's words, P per cycle: the largest length, the L2 sum (or
    r = 0 for ``max``), then sign and level, against golden ``quantize_error``."""
    rng = rng_for(30 + levels)
    lanes, n, d_bits = 4, 24, 20
    quant = ErrorLevelLanes(lanes=lanes, d_bits=d_bits, levels=levels, time_steps=T)
    norm_unit = L2Normaliser(lanes=lanes, words=n, offset_bits=quant.offset_bits)
    top = Module()
    top.submodules.quant, top.submodules.norm = quant, norm_unit
    cases = displacement_cases(rng, n, d_bits)
    results = []

    async def through(ctx, d, times):
        """One word into ``quant``, held for its latency: its outputs are then this word's."""
        ctx.set(quant.d, d.tolist()); ctx.set(quant.time, times.tolist())
        await ctx.tick().repeat(quant.latency)

    async def tb(ctx):
        for d, times in cases:
            blocks = [slice(b, b + lanes) for b in range(0, n, lanes)]
            top_length = 0
            for b in blocks:                                   # pass 1: emax + 1
                await through(ctx, d[b], times[b])
                top_length = max(top_length, ctx.get(quant.length_max))
            ctx.set(quant.top_length, top_length)
            shift = 0
            if norm == "l2":                                   # pass 2: S, then r
                words = []
                for b in blocks:
                    await through(ctx, d[b], times[b])
                    words.append((ctx.get(quant.offset), ctx.get(quant.counted)))
                for first, (offset, counted) in enumerate(words):
                    ctx.set(norm_unit.offset, offset)
                    ctx.set(norm_unit.counted, counted)
                    ctx.set(norm_unit.first, first == 0)
                    await ctx.tick()
                shift = ctx.get(norm_unit.shift)
            ctx.set(quant.norm_shift, shift)
            sign, level = [], []
            for b in blocks:                                   # pass 3: sign and level
                await through(ctx, d[b], times[b])
                sign += list(ctx.get(quant.sign))
                level += list(ctx.get(quant.level))
            results.append((sign, level))

    simulate(top, tb)
    all_levels = set()
    for (d, times), (sign, level) in zip(cases, results):
        s_ref, lvl_ref = golden.quantize_error(d, times, levels, norm)
        np.testing.assert_array_equal(sign, s_ref, err_msg=f"{d} {times}")
        np.testing.assert_array_equal(level, lvl_ref, err_msg=f"{d} {times}")
        all_levels |= set(lvl_ref[s_ref != 0].tolist())
    assert {0, levels} <= all_levels          # both ends of the level range reached


# ------------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", [2, 3])
def test_min_pool_matches_golden_min_pool(kernel):
    """Two channels on two lanes, windows back to back; times from a small set so that windows tie,
    and whole silent windows (every tap T). Results are read one cycle after each window's last tap."""
    rng = rng_for(40 + kernel)
    side = 4 * kernel
    t_map = rng.choice([0, 3, 3, T - 1, T, T], (2, side, side))
    t_map[0, :kernel, :kernel] = T                                     # all silent
    t_map[1, :kernel, :kernel] = 3                                     # all tied
    t_map[1, :kernel, kernel:2 * kernel] = T
    t_map[1, kernel - 1, 2 * kernel - 1] = T - 1                       # the last tap wins alone
    shape = (2, side // kernel, side // kernel)
    times_ref, arg_ref = golden.min_pool(t_map, kernel, shape)
    windows = [(y, x) for y in range(shape[1]) for x in range(shape[2])]
    dut = MinPool(lanes=2, kernel=kernel, time_steps=T)
    assert dut.latency == 1
    got_t, got_a = [], []

    async def tb(ctx):
        for n, (y, x) in enumerate(windows):
            for ky in range(kernel):
                for kx in range(kernel):
                    ctx.set(dut.time, t_map[:, y * kernel + ky, x * kernel + kx].tolist())
                    ctx.set(dut.first, ky == 0 and kx == 0)
                    if n and ky == 0 and kx == 0:          # the previous window, while tap 0 goes in
                        got_t.append(list(ctx.get(dut.min_time))); got_a.append(list(ctx.get(dut.argmin)))
                    await ctx.tick()
        got_t.append(list(ctx.get(dut.min_time))); got_a.append(list(ctx.get(dut.argmin)))

    simulate(dut, tb)
    np.testing.assert_array_equal(np.array(got_t).T, times_ref.reshape(2, -1))
    np.testing.assert_array_equal(np.array(got_a).T, arg_ref.reshape(2, -1))
    assert times_ref[0, 0, 0] == T and arg_ref[0, 0, 0] == 0 and arg_ref[1, 0, 1] == kernel * kernel - 1


# ------------------------------------------------------------------------------------------------
# Backward: update and displacement
# ------------------------------------------------------------------------------------------------

def backward_layer(rng, n_in, n_out, weight_bits, levels):
    """One fc layer's backward inputs with the extremes: weights at and next to both rails, lvl 0 and
    Q, post times T-1 and T (silent output), pre times 0, T-1, T and equal to a post's, dropped pres."""
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    w = rng.integers(lo, hi + 1, (n_in, n_out))
    w[0], w[1] = hi, lo
    w[2, :2], w[3, :2] = hi - 1, lo + 1
    s = rng.integers(-1, 2, n_out)
    s[:3] = [1, -1, 0]
    lvl = rng.integers(0, levels + 1, n_out)
    lvl[:2] = [0, levels]
    t_post = rng.integers(0, T + 1, n_out)
    t_post[:2] = [T, T - 1]
    t_pre = rng.integers(0, T + 1, n_in)
    t_pre[:6] = [0, 0, 1, 2, T - 1, T]
    t_pre[6] = t_post[2]
    keep = rng.random(n_in) < 0.85
    keep[:6] = True
    return w, s, lvl, t_post, t_pre, keep


UPDATE_CONFIGS = [(16, 6, 0), (16, 6, 4), (8, 6, 0), (12, 6, 12), (16, 6, 15), (16, 3, 1)]


@pytest.mark.parametrize("weight_bits,levels,lr_shift", UPDATE_CONFIGS)
def test_fc_update_lanes_match_golden_fc_backward(weight_bits, levels, lr_shift):
    """Each layer's weights one pre row (P = 4 posts) per cycle, pipelined, against ``fc_backward``
    (weights, new sign bits); both saturation rails are reached."""
    rng = rng_for(weight_bits * 100 + lr_shift)
    lanes, n_in, n_out = 4, 10, 4
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    dut = FcUpdateLanes(lanes=lanes, weight_bits=weight_bits, levels=levels, max_lr_shift=15, time_steps=T)
    assert dut.latency == 2
    layers = [backward_layer(rng, n_in, n_out, weight_bits, levels) for _ in range(6)]
    rows = [(w[j], s, lvl, t_post, t_pre[j], keep[j]) for w, s, lvl, t_post, t_pre, keep in layers
            for j in range(n_in)]

    def apply(ctx, row):
        w, s, lvl, t_post, t_pre, keep = row
        ctx.set(dut.w, w.tolist()); ctx.set(dut.sign, s.tolist()); ctx.set(dut.level, lvl.tolist())
        ctx.set(dut.t_post, t_post.tolist()); ctx.set(dut.t_pre, [int(t_pre)] * lanes)
        ctx.set(dut.keep, (1 << lanes) - 1 if keep else 0); ctx.set(dut.lr_shift, lr_shift)

    got = run_piped(dut, rows, apply, lambda ctx: (list(ctx.get(dut.w_next)), ctx.get(dut.negative),
                                                   ctx.get(dut.applied)))
    clamped, changed_any = set(), False
    for n, (w, s, lvl, t_post, t_pre, keep) in enumerate(layers):
        new = w.copy()
        # want_d=True: golden skips pres at T-1 when it computes no D (see the report); same mask otherwise
        golden.fc_backward(new, s, lvl, t_post, t_pre, (t_pre < T) & keep, True, T, weight_bits, lr_shift)
        block = got[n * n_in:(n + 1) * n_in]
        np.testing.assert_array_equal([row[0] for row in block], new)
        np.testing.assert_array_equal([unbits(row[1], lanes) for row in block],
                                      golden.forward_weights(new, "binary", 0) < 0)
        changed = [unbits(row[2], lanes) for row in block]
        assert np.all(np.array(changed)[new != w] == 1)
        clamped |= {int(v) for v in new[(new != w) & ((new == hi) | (new == lo))]}
        changed_any |= bool(np.any(new != w))
    if lr_shift <= 4:
        assert clamped == {lo, hi}              # an update ran into each rail and stopped there
    else:
        assert changed_any == (lr_shift < 15)   # R = 15 rounds every step (<= 101 << 6) to 0


@pytest.mark.parametrize("lanes", [1, 4, 8])
def test_displacement_lanes_match_golden_fc_backward(lanes):
    """D_j with the new weights, one pre and one block of P posts per cycle, summed over the blocks,
    against ``fc_backward``'s D; rails with lvl = Q give the largest terms."""
    rng = rng_for(50 + lanes)
    weight_bits, levels, n_in, n_out = 16, 6, 10, 8
    dut = DisplacementLanes(lanes=lanes, weight_bits=weight_bits, levels=levels, time_steps=T)
    assert dut.latency == {1: 2, 4: 3, 8: 4}[lanes]
    layers = []
    for n in range(5):
        w, s, lvl, t_post, t_pre, keep = backward_layer(rng, n_in, n_out, weight_bits, levels)
        if n == 0:   # every post at t = 0: g = 0 keeps the row at the bottom rail, s = -1 makes each of
            # its terms -(-2**15 << 6) = +2**21, one bit wider than a weight shifted by Q
            s[:], lvl[:], t_post[:], keep[:] = -1, levels, 0, True
        new = w.copy()
        _, d_ref = golden.fc_backward(new, s, lvl, t_post, t_pre, (t_pre < T) & keep, True, T, weight_bits, 4)
        layers.append((new, s, lvl, t_post, t_pre, keep, d_ref))
    sets = [(new[j, b:b + lanes], s[b:b + lanes], lvl[b:b + lanes], t_post[b:b + lanes], t_pre[j], keep[j])
            for new, s, lvl, t_post, t_pre, keep, _ in layers for j in range(n_in) for b in range(0, n_out, lanes)]

    def apply(ctx, v):
        w, s, lvl, t_post, t_pre, keep = v
        ctx.set(dut.w, w.tolist()); ctx.set(dut.sign, s.tolist()); ctx.set(dut.level, lvl.tolist())
        ctx.set(dut.t_post, t_post.tolist()); ctx.set(dut.t_pre, int(t_pre)); ctx.set(dut.keep, bool(keep))

    got = np.array(run_piped(dut, sets, apply, lambda ctx: ctx.get(dut.term)), np.int64)
    d_got = got.reshape(len(layers), n_in, -1).sum(axis=2)
    np.testing.assert_array_equal(d_got, [d_ref for *_, d_ref in layers])
    assert got.max() == lanes << (weight_bits - 1 + levels)               # the largest term, exact


# ------------------------------------------------------------------------------------------------
# Constructors and the multiplier-free proof
# ------------------------------------------------------------------------------------------------

def test_constructor_errors():
    with pytest.raises(ValueError, match=r"^lanes must be >= 1, not 0$"):
        IntegrateLanes(lanes=0, fan_in=10)
    with pytest.raises(TypeError, match=r"^weight_bits must be an integer, not '16'$"):
        FcUpdateLanes(lanes=2, weight_bits="16")
    with pytest.raises(ValueError, match=r"^offset_bits must be >= 5, not 4$"):
        L2Normaliser(lanes=1, words=8, offset_bits=4)
    with pytest.raises(TypeError):
        MinPool(2, 2)                               # keyword-only


class _AllLanes(wiring.Component):
    """Every component side by side, its ports passed through, so Yosys sees all of their logic."""

    def __init__(self):
        self.parts = {
            "enc": EncoderRom(lanes=2), "sign": SignAccumulateLanes(lanes=4, fan_in=784),
            "integ": IntegrateLanes(lanes=4, fan_in=784), "lead": LeadingOne(width=31),
            "quant": ErrorLevelLanes(lanes=4, d_bits=20), "norm": L2Normaliser(lanes=4, words=128, offset_bits=6),
            "pool": MinPool(lanes=2, kernel=2), "upd": FcUpdateLanes(lanes=4), "disp": DisplacementLanes(lanes=4),
        }
        super().__init__({name: Out(part.signature) for name, part in self.parts.items()})

    def elaborate(self, platform):
        m = Module()
        for name, part in self.parts.items():
            m.submodules[name] = part
            wiring.connect(m, wiring.flipped(getattr(self, name)), part)
        return m


@pytest.mark.synth
@pytest.mark.usefixtures("yosys")
def test_no_multiplier_cells():
    """Yosys ``proc; flatten; opt; stat``: no $mul/$macc/$div/$mod/$pow cell in any component."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "lanes.il").write_text(rtlil.convert(_AllLanes(), name="lanes", emit_src=False))
        # relative paths: YoWASP's WebAssembly sandbox sees the working directory
        result = subprocess.run(yosys_command() + ["-q", "-p", "read_rtlil lanes.il; hierarchy -top lanes; proc; "
                                                   "flatten; opt; tee -q -o stat.json stat -json"],
                                cwd=tmp, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr or result.stdout
        modules = json.loads(Path(tmp, "stat.json").read_text())["modules"]
    module = modules.get("lanes") or modules["\\lanes"]
    cells = module.get("num_cells_by_type") or module.get("cell_types") or {}
    assert cells.get("$add", 0) > 0 and cells.get("$memrd_v2", 0) == 2, cells   # the statistics were read
    assert forbidden_cells(cells) == {}, cells
