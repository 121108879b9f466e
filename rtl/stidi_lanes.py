"""P-lane datapath pieces of the binarized STiDi-BP core (issue #11), each one a ``wiring.Component``.

Each piece mirrors one function of the integer golden model ``mfsnn.golden.stidi_fixed`` (the bit-level
spec is docs/golden-spec-stidi.md, cited as §n) on P neurons, synapses or windows at once, so it can
be unit-tested under Amaranth's simulator (tests/test_rtl_stidi_lanes.py). As in ``rtl/lanes.py`` a
piece is combinational (``latency`` 0), a fixed pipeline taking one input set per cycle whose outputs
follow ``latency`` cycles later (no valid bits: the controller delays its own control by ``latency``),
or a small accumulator restarted by a ``first`` input. Nothing here multiplies two data values: the
±1 forward weight is a sign bit, a power-of-two error is a shift, a signed step is a conditional
negate, the level quantiser is a leading-one detector. Products of constants (the encoding ROM, widths)
are computed on the host at elaboration.

Widths follow the spec's table (§3): a stage with fan-in F has ``|I| <= F`` and ``|U| <= F*(T-1)``,
so ``IntegrateLanes`` sized from F never overflows, as the golden model never saturates I or U.
Spike times are ``T.bit_length()`` bits wide and hold 0 .. T, with T meaning "silent".
"""

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .lanes import pipelined_tree_sum, tree_registers, tree_sum

__all__ = ["encoding_rom", "signed_bits", "leading_one", "bit_length_of", "clip_displacement",
           "EncoderRom", "SignAccumulateLanes", "IntegrateLanes", "LeadingOne", "max_tree", "ErrorLevelLanes",
           "L2Normaliser", "MinPool", "FcUpdateLanes", "DisplacementLanes"]


def _count(name, value, minimum=1):
    """A validated integer parameter: TypeError for a non-integer, ValueError below ``minimum``."""
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value!r}")
    return value


def signed_bits(bound):
    """The fewest bits of a signed word holding every integer in ``[-bound, bound]``."""
    return bound.bit_length() + 1


def _time_bits(time_steps):
    return time_steps.bit_length()   # spike times 0 .. T (T = silent): u7 for T = 101


def _lanes_of(shape, lanes):
    return data.ArrayLayout(shape, lanes)


# ------------------------------------------------------------------------------------------------
# Encoding (§4)
# ------------------------------------------------------------------------------------------------

def encoding_rom(time_steps):
    """``ENC[p] = Tend - ceil(Tend*p/255)`` for p = 0..255, Tend = T-1: host-side products of constants."""
    t_end = time_steps - 1
    return [t_end - (t_end * p + 254) // 255 for p in range(256)]


class EncoderRom(wiring.Component):
    """Pixel -> spike time on P lanes: ``time[k] = ENC[pixel[k]]`` (§4; golden ``stidi.encoding_table``,
    the table of ``_StidiLearner.encode``).

    A 256-word read-only ``Memory`` with one synchronous read port per lane, so it maps to block RAM:
    ``latency`` 1, one pixel set per cycle.
    """
    latency = 1

    def __init__(self, *, lanes=1, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.time_steps = _count("time_steps", time_steps, 2)
        self.time_bits = _time_bits(self.time_steps)
        super().__init__({
            "pixel": In(_lanes_of(unsigned(8), self.lanes)),
            "time": Out(_lanes_of(unsigned(self.time_bits), self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Memory(shape=unsigned(self.time_bits), depth=256,
                                        init=encoding_rom(self.time_steps))
        for k in range(self.lanes):
            port = rom.read_port()
            m.d.comb += [port.addr.eq(self.pixel[k]), self.time[k].eq(port.data)]
        return m


# ------------------------------------------------------------------------------------------------
# Forward: accumulate-current integrate-and-fire (§5)
# ------------------------------------------------------------------------------------------------

class SignAccumulateLanes(wiring.Component):
    """One arriving pre-synaptic spike's binary forward weights into P post lanes' step increment:

        delta_next[k] = delta[k] + (spike ? (negative[k] ? -1 : +1) : 0)

    ``negative`` is the MSB of the P latent weights W_kj of the arriving pre j (the forward sign plane):
    0 -> +1, 1 -> -1, so sign(0) = +1 (golden ``forward_weights(w, "binary")``). Summed over the pres
    spiking at step t, from delta = 0, it gives golden ``fc_currents``' C[k, t]; |delta| <= F, so it
    has the width of I. Combinational (``latency`` 0); the core holds delta in a register.
    """
    latency = 0

    def __init__(self, *, lanes, fan_in):
        self.lanes = _count("lanes", lanes)
        self.fan_in = _count("fan_in", fan_in)
        self.current_bits = signed_bits(self.fan_in)
        layout = _lanes_of(signed(self.current_bits), self.lanes)
        super().__init__({
            "spike": In(1),
            "negative": In(self.lanes),
            "delta": In(layout),
            "delta_next": Out(layout),
        })

    def elaborate(self, platform):
        m = Module()
        for k in range(self.lanes):
            step = Mux(self.spike, Mux(self.negative[k], -1, 1), 0)
            m.d.comb += self.delta_next[k].eq(self.delta[k] + step)
        return m


class IntegrateLanes(wiring.Component):
    """One time step t of P neurons, in the spec's order (§5; golden ``integrate``):

        1. u_next = u + i                                   (U += I: the current of the steps before t)
        2. fired = (t_fire == T) & (u_next >= threshold)    (first crossing only; no reset, no leak)
           t_fire_next = fired ? t : t_fire
        3. i_next = i + delta                                (this step's arrivals, from SignAccumulateLanes)

    Sized from the fan-in F: I is ``signed_bits(F)`` and U ``signed_bits(F*(T-1))`` bits (s11 / s18
    for 784 inputs and T = 101). Every reachable |I| <= F and |U| <= F*(T-1), so the exact sums never
    wrap; the golden model does not saturate I or U either. ``threshold`` has U's width.
    Combinational (``latency`` 0): registers (or memory words) in, registers out.
    """
    latency = 0

    def __init__(self, *, lanes, fan_in, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.fan_in = _count("fan_in", fan_in)
        self.time_steps = _count("time_steps", time_steps, 2)
        self.current_bits = signed_bits(self.fan_in)
        self.membrane_bits = signed_bits(self.fan_in * (self.time_steps - 1))   # host-side constant
        self.time_bits = _time_bits(self.time_steps)
        il = _lanes_of(signed(self.current_bits), self.lanes)
        ul = _lanes_of(signed(self.membrane_bits), self.lanes)
        tl = _lanes_of(unsigned(self.time_bits), self.lanes)
        super().__init__({
            "i": In(il), "u": In(ul), "t_fire": In(tl), "delta": In(il),
            "t": In(unsigned(self.time_bits)),
            "threshold": In(signed(self.membrane_bits)),
            "i_next": Out(il), "u_next": Out(ul), "t_fire_next": Out(tl),
            "fired": Out(self.lanes),
        })

    def elaborate(self, platform):
        m = Module()
        for k in range(self.lanes):
            u_next = Signal(signed(self.membrane_bits), name=f"u_next_{k}")
            m.d.comb += u_next.eq(self.u[k] + self.i[k])
            fired = (self.t_fire[k] == self.time_steps) & (u_next >= self.threshold)
            m.d.comb += [
                self.u_next[k].eq(u_next),
                self.fired[k].eq(fired),
                self.t_fire_next[k].eq(Mux(fired, self.t, self.t_fire[k])),
                self.i_next[k].eq(self.i[k] + self.delta[k]),
            ]
        return m


# ------------------------------------------------------------------------------------------------
# Leading-one detector and the hidden error's power-of-two levels (§9.5, §9.6)
# ------------------------------------------------------------------------------------------------

def leading_one(x):
    """(nonzero, msb) of an unsigned value: a log-depth priority encoder. ``msb`` is the index of the
    highest set bit (``ceil(log2 width)`` bits; 0 when x == 0, so check ``nonzero``).

    The low half is a power of two wide, so the index is ``Cat(index of the chosen half, high half
    nonzero)``: no adder in the tree.
    """
    width = len(x)
    if width == 1:
        return x[0], Const(0, 0)
    half = 1 << ((width - 1).bit_length() - 1)
    lo_nonzero, lo_msb = leading_one(x[:half])
    hi_nonzero, hi_msb = leading_one(x[half:])
    return lo_nonzero | hi_nonzero, Cat(Mux(hi_nonzero, hi_msb, lo_msb), hi_nonzero)


def bit_length_of(x):
    """``bit_length(x)`` of an unsigned value (0 -> 0; golden ``fixedpoint.bit_length``)."""
    nonzero, msb = leading_one(x)
    return Mux(nonzero, msb + 1, 0)


class LeadingOne(wiring.Component):
    """``msb(x) = bit_length(x) - 1`` of an unsigned ``width``-bit value (golden ``fixedpoint.bit_length``):
    ``length`` = bit_length(x) (0 for x == 0), ``msb`` = the highest set bit's index (0 when x == 0),
    ``nonzero``. Combinational (``latency`` 0), log depth, any width."""
    latency = 0

    def __init__(self, *, width):
        self.width = _count("width", width)
        super().__init__({
            "x": In(unsigned(self.width)),
            "nonzero": Out(1),
            "msb": Out(unsigned(max(1, (self.width - 1).bit_length()))),
            "length": Out(range(self.width + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        nonzero, msb = leading_one(self.x)
        m.d.comb += [self.nonzero.eq(nonzero), self.msb.eq(msb), self.length.eq(Mux(nonzero, msb + 1, 0))]
        return m


def clip_displacement(d, time):
    """The clip rule (§9.5): ``D = 0`` where ``t == 0 and D < 0`` (the target would be before step 0)."""
    return Mux((time == 0) & (d < 0), 0, d)


def max_tree(values):
    """The largest of ``values`` (unsigned), as a balanced tree of comparators (log depth)."""
    while len(values) > 1:
        pairs = zip(values[0::2], values[1::2])
        values = [Mux(a > b, a, b) for a, b in pairs] + values[len(values) - len(values) % 2:]
    return values[0]


class ErrorLevelLanes(wiring.Component):
    """Hidden error of P neurons as a signed power of two (§9.5–9.6; golden ``quantize_error``).

    Per lane: ``D' = clip_displacement(d, time)``, ``length = bit_length(|D'|)`` (= msb + 1, 0 for
    D' = 0), ``offset = length - top_length`` (= m_j - emax, <= 0 when ``top_length`` is the stage's
    largest ``length``), ``level = offset - norm_shift + levels``, and
    ``sign = sign(D')`` if D' != 0 and level >= 0, else 0 (``level`` 0 then).

    One piece serves the three passes over a stage's words: (1) ``length_max``, the lanes' largest
    length, gives the core emax + 1 (it keeps the running max); (2) ``offset`` and ``counted`` (D' != 0)
    feed ``L2Normaliser``; (3) with ``norm_shift`` = its r (0 for ``error_norm="max"``) it gives
    ``sign`` and ``level``.

    Pipelined (``latency`` 2, for timing: a memory read, the clip, the negation, the leading-one
    detector and the lanes' maximum were one path): |D'| and its sign are registered, then the
    lengths; ``top_length`` and ``norm_shift`` act in the output cycle, combinationally.
    """
    latency = 2

    def __init__(self, *, lanes, d_bits, levels=6, max_norm_shift=15, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.d_bits = _count("d_bits", d_bits, 2)
        self.levels = _count("levels", levels, 0)
        self.max_norm_shift = _count("max_norm_shift", max_norm_shift, 0)   # r <= log2(words)/2
        self.time_steps = _count("time_steps", time_steps, 2)
        self.offset_bits = signed_bits(self.d_bits)          # offsets lie in [-d_bits, d_bits]
        # level = offset - r + Q lies in [-d_bits - max r, d_bits + Q]
        self.level_bits = signed_bits(self.d_bits + max(self.max_norm_shift, self.levels))
        super().__init__({
            "d": In(_lanes_of(signed(self.d_bits), self.lanes)),
            "time": In(_lanes_of(unsigned(_time_bits(self.time_steps)), self.lanes)),
            "top_length": In(range(self.d_bits + 1)),
            "norm_shift": In(range(self.max_norm_shift + 1)),
            "length": Out(_lanes_of(range(self.d_bits + 1), self.lanes)),
            "length_max": Out(range(self.d_bits + 1)),
            "offset": Out(_lanes_of(signed(self.offset_bits), self.lanes)),
            "counted": Out(self.lanes),
            "sign": Out(_lanes_of(signed(2), self.lanes)),
            "level": Out(_lanes_of(range(self.levels + 1), self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        lengths = []
        for k in range(self.lanes):
            d = Signal(signed(self.d_bits), name=f"clipped_{k}")
            m.d.comb += d.eq(clip_displacement(self.d[k], self.time[k]))
            # stage 1: |D'| (the most negative D gives 2**(d_bits-1): still d_bits bits unsigned)
            magnitude, negative = Signal(self.d_bits, name=f"magnitude_{k}"), Signal(name=f"negative_{k}")
            m.d.sync += [magnitude.eq(Mux(d < 0, -d, d)[:self.d_bits]), negative.eq(d < 0)]
            # stage 2: its length
            length, negative_2 = Signal(range(self.d_bits + 1), name=f"length_{k}"), Signal(name=f"negative_2_{k}")
            m.d.sync += [length.eq(bit_length_of(magnitude)), negative_2.eq(negative)]
            lengths.append(length)
            offset = Signal(signed(self.offset_bits), name=f"offset_{k}")
            m.d.comb += offset.eq(length - self.top_length)
            level = Signal(signed(self.level_bits), name=f"level_{k}")
            m.d.comb += level.eq(offset - self.norm_shift + self.levels)
            keep = (length != 0) & (level >= 0)
            m.d.comb += [
                self.length[k].eq(length),
                self.offset[k].eq(offset),
                self.counted[k].eq(length != 0),
                self.sign[k].eq(Mux(keep, Mux(negative_2, -1, 1), 0)),
                self.level[k].eq(Mux(keep, level, 0)),
            ]
        m.d.comb += self.length_max.eq(max_tree(lengths))
        return m


class L2Normaliser(wiring.Component):
    """The L2 norm shift r of ``error_norm="l2"`` (§9.6; golden ``l2_shift``), P offsets per cycle:

        S = sum over counted words with offset >= -G of 1 << 2*(offset + G)
        r = (msb(S) >> 1) - G

    ``offset_bits`` is ``ErrorLevelLanes.offset_bits`` (a narrower port would wrap large offsets into
    [-G, 0]). ``first`` restarts the sum with this cycle's words. ``total`` (S) and ``shift`` (r) are
    ``latency`` 1 cycle after the last words went in. Each lane's term is a one-hot decode (a power
    of four), the lanes' terms meet in an adder tree. Offsets must be <= 0 (the stage's emax word has
    offset 0, so S >= 4**G and r >= 0); r reads 0 before any word is in. S is
    ``(words << 2G).bit_length()`` bits wide for up to ``words`` nonzero errors per stage (u24 for 128
    words, u30 for 16*28*28).
    """
    latency = 1

    def __init__(self, *, lanes, words, offset_bits, guard=8):
        self.lanes = _count("lanes", lanes)
        self.words = _count("words", words)
        self.guard = _count("guard", guard, 0)
        self.offset_bits = _count("offset_bits", offset_bits, signed_bits(self.guard))
        self.total_bits = (self.words << (2 * self.guard)).bit_length()
        self.max_shift = ((self.total_bits - 1) >> 1) - self.guard    # r of ``words`` equal errors
        super().__init__({
            "offset": In(_lanes_of(signed(self.offset_bits), self.lanes)),
            "counted": In(self.lanes),
            "first": In(1),
            "total": Out(unsigned(self.total_bits)),
            "shift": Out(range(self.max_shift + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        guard = self.guard
        terms = []
        for k in range(self.lanes):
            # bit 2*(o + G) for o = -G .. 0, nothing below -G (or for an uncounted lane)
            hits = [self.counted[k] & (self.offset[k] == o - guard) for o in range(guard + 1)]
            term = Signal(unsigned(2 * guard + 1), name=f"term_{k}")
            m.d.comb += term.eq(Cat(*(Cat(hit, Const(0, 1)) for hit in hits))[:2 * guard + 1])
            terms.append(term)
        total = Signal(unsigned(self.total_bits))
        m.d.sync += total.eq(Mux(self.first, 0, total) + tree_sum(terms))
        nonzero, msb = leading_one(total)
        m.d.comb += [
            self.total.eq(total),
            self.shift.eq(Mux(nonzero & (msb >= 2 * guard), (msb >> 1) - guard, 0)),
        ]
        return m


# ------------------------------------------------------------------------------------------------
# Min-time pooling (§6)
# ------------------------------------------------------------------------------------------------

class MinPool(wiring.Component):
    """k x k min-time pooling of P windows, one tap per cycle (golden ``min_pool``):

        tap = first ? 0 : (previous tap + 1)
        keep = first | (time < min_time);  min_time, argmin = keep ? (time, tap) : (min_time, argmin)

    Taps come in row-major window order (``ky*k + kx``); the strict ``<`` keeps the first minimum, so
    ties and an all-silent window (every time T) give the first tap. ``first`` marks tap 0 of the next
    windows. ``min_time`` and ``argmin`` are registers: a window's result is there ``latency`` 1 cycle
    after its last tap, while the next window's tap 0 goes in.
    """
    latency = 1

    def __init__(self, *, lanes=1, kernel=2, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.kernel = _count("kernel", kernel)
        self.time_steps = _count("time_steps", time_steps, 2)
        self.taps = self.kernel * self.kernel                      # host-side constant
        tl = _lanes_of(unsigned(_time_bits(self.time_steps)), self.lanes)
        super().__init__({
            "time": In(tl),
            "first": In(1),
            "min_time": Out(tl),
            "argmin": Out(_lanes_of(range(self.taps), self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        next_tap = Signal(range(self.taps + 1))
        tap = Mux(self.first, 0, next_tap)
        m.d.sync += next_tap.eq(tap + 1)
        for k in range(self.lanes):
            best = Signal(unsigned(_time_bits(self.time_steps)), name=f"best_{k}")
            arg = Signal(range(self.taps), name=f"arg_{k}")
            with m.If(self.first | (self.time[k] < best)):
                m.d.sync += [best.eq(self.time[k]), arg.eq(tap)]
            m.d.comb += [self.min_time[k].eq(best), self.argmin[k].eq(arg)]
        return m


# ------------------------------------------------------------------------------------------------
# Backward: FC update and displacement (§9.1–9.3)
# ------------------------------------------------------------------------------------------------

def _eligible(t_pre, t_post, keep, sign, time_steps):
    """The update/displacement mask: the pre fired (t_pre < T), is not dropped, fired no later than the
    post (t_pre <= t_post), and the post has an error (s != 0)."""
    return (t_pre < time_steps) & keep & (t_pre <= t_post) & (sign != 0)


class FcUpdateLanes(wiring.Component):
    """FC weight update of P synapses (§9.1–9.2; golden ``fc_backward``'s update):

        g = (t_post - t_pre) << level;  g = (g + 2**(R-1)) >> R if R > 0   (R = ``lr_shift``)
        w_next = eligible ? sat_WBITS(w - s*g) : w       (s*g: s = +1 subtract, s = -1 add)
        negative = MSB of w_next                          (the new forward sign bit, §9.2)

    Every input is per lane (one pre and P posts, or P pres of one post); ``lr_shift`` is an input
    because the step-decay schedule (§9.1) adds to R per epoch. ``applied`` says the mask held.

    Pipelined like ``UpdateLanes`` (rtl/lanes.py): one input set per cycle, outputs ``latency`` = 2
    cycles later. Stage 1 registers the inputs (w and the spike times come from block RAM), stage 2
    the rounded step; the conditional subtract and the saturation follow the stage-2 register.
    """
    latency = 2

    def __init__(self, *, lanes, weight_bits=16, levels=6, max_lr_shift=15, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.weight_bits = _count("weight_bits", weight_bits, 2)
        self.levels = _count("levels", levels, 0)
        self.max_lr_shift = _count("max_lr_shift", max_lr_shift, 0)
        self.time_steps = _count("time_steps", time_steps, 2)
        self.time_bits = _time_bits(self.time_steps)
        self.step_bits = self.time_bits + self.levels + 1      # (t_post - t_pre) << level, plus rounding
        wl = _lanes_of(signed(self.weight_bits), self.lanes)
        tl = _lanes_of(unsigned(self.time_bits), self.lanes)
        super().__init__({
            "w": In(wl), "t_pre": In(tl), "t_post": In(tl), "keep": In(self.lanes),
            "sign": In(_lanes_of(signed(2), self.lanes)),
            "level": In(_lanes_of(range(self.levels + 1), self.lanes)),
            "lr_shift": In(range(self.max_lr_shift + 1)),
            "w_next": Out(wl), "negative": Out(self.lanes), "applied": Out(self.lanes),
        })

    def elaborate(self, platform):
        m = Module()
        # stage 1: the inputs
        w1, t_pre1, t_post1 = Signal.like(self.w), Signal.like(self.t_pre), Signal.like(self.t_post)
        keep1, sign1, level1 = Signal.like(self.keep), Signal.like(self.sign), Signal.like(self.level)
        shift1 = Signal.like(self.lr_shift)
        m.d.sync += [w1.eq(self.w), t_pre1.eq(self.t_pre), t_post1.eq(self.t_post), keep1.eq(self.keep),
                     sign1.eq(self.sign), level1.eq(self.level), shift1.eq(self.lr_shift)]
        half = (Const(1, 1) << shift1) >> 1            # 2**(R-1), 0 when R == 0
        for k in range(self.lanes):
            eligible = _eligible(t_pre1[k], t_post1[k], keep1[k], sign1[k], self.time_steps)
            # stage 2: the rounded step, the weight, and whether to add or subtract it
            step = Signal(unsigned(self.step_bits), name=f"step_{k}")
            w2 = Signal(signed(self.weight_bits), name=f"w2_{k}")
            apply2, add2 = Signal(name=f"apply2_{k}"), Signal(name=f"add2_{k}")
            distance = (t_post1[k] - t_pre1[k])[:self.time_bits]      # >= 0 where eligible
            m.d.sync += [step.eq(((distance << level1[k]) + half) >> shift1),
                         w2.eq(w1[k]), apply2.eq(eligible), add2.eq(sign1[k] < 0)]
            total = Mux(add2, w2 + step, w2 - step)
            w_next = Mux(apply2, _saturate(total, self.weight_bits), w2)
            m.d.comb += [self.w_next[k].eq(w_next), self.negative[k].eq(w_next[-1]),
                         self.applied[k].eq(apply2)]
        return m


def _saturate(x, bits):
    """Clamp signed ``x`` to the ``bits``-bit signed range (``fixedpoint.saturate``)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(x > hi, Const(hi, signed(bits)), Mux(x < lo, Const(lo, signed(bits)), x[:bits].as_signed()))


class DisplacementLanes(wiring.Component):
    """Displacement contribution of P posts k to one pre j (§9.3; golden ``fc_backward``'s D part):

        term = sum_k eligible_k ? s_k * (w_k << level_k) : 0

    with the update's mask (``t_pre``, ``keep`` of the one pre j; ``t_post``, ``sign``, ``level`` and
    the **new** weight ``w`` per post lane). s*x is a conditional negate. The core sums ``term`` over
    the post blocks into D_j and applies ``clip_displacement`` (§9.5) once D_j is complete, in
    ``ErrorLevelLanes``. Exact: ``term`` has ``weight_bits + levels + 1 + ceil(log2 P)`` bits.

    Pipelined like ``DesireLanes``: one input set per cycle, ``term`` ``latency`` cycles later;
    stage 1 registers the inputs (the weights come from block RAM), stage 2 the lanes' signed shifted
    weights, then one register per two levels of the adder tree.
    """

    def __init__(self, *, lanes, weight_bits=16, levels=6, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.weight_bits = _count("weight_bits", weight_bits, 2)
        self.levels = _count("levels", levels, 0)
        self.time_steps = _count("time_steps", time_steps, 2)
        self.tree_levels = (self.lanes - 1).bit_length()
        self.lane_bits = self.weight_bits + self.levels + 1       # -(-2**(WB-1) << Q) needs the +1
        self.term_bits = self.lane_bits + self.tree_levels
        self.latency = 2 + tree_registers(self.lanes)
        time = unsigned(_time_bits(self.time_steps))
        super().__init__({
            "w": In(_lanes_of(signed(self.weight_bits), self.lanes)),
            "t_post": In(_lanes_of(time, self.lanes)),
            "sign": In(_lanes_of(signed(2), self.lanes)),
            "level": In(_lanes_of(range(self.levels + 1), self.lanes)),
            "t_pre": In(time), "keep": In(1),
            "term": Out(signed(self.term_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        # stage 1: the inputs
        w1, t_post1 = Signal.like(self.w), Signal.like(self.t_post)
        sign1, level1 = Signal.like(self.sign), Signal.like(self.level)
        t_pre1, keep1 = Signal.like(self.t_pre), Signal.like(self.keep)
        m.d.sync += [w1.eq(self.w), t_post1.eq(self.t_post), sign1.eq(self.sign), level1.eq(self.level),
                     t_pre1.eq(self.t_pre), keep1.eq(self.keep)]
        terms = []
        for k in range(self.lanes):
            # stage 2: s*(w << lvl), or 0 outside the mask
            eligible = _eligible(t_pre1, t_post1[k], keep1, sign1[k], self.time_steps)
            shifted = w1[k] << level1[k]
            term = Signal(signed(self.lane_bits), name=f"lane_term_{k}")
            m.d.sync += term.eq(Mux(eligible, Mux(sign1[k] < 0, -shifted, shifted), 0))
            terms.append(term)
        m.d.comb += self.term.eq(pipelined_tree_sum(m, terms))
        return m
