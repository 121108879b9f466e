"""Combinational P-lane datapath pieces of the desire-BP core, each one a ``wiring.Component``.

Each piece mirrors one golden-model function on P neurons or synapses at once, so it can be
unit-tested against ``mfsnn.golden.desire`` under Amaranth's simulator. A piece is either
combinational (``latency`` 0) or a fixed pipeline taking one input set per cycle whose outputs follow
``latency`` cycles later (no valid bits: the controller delays its own control by ``latency``).
Nothing here multiplies: decay and rounding are shifts, the error weight is a shift (pow2) or a sum
of shifted bit planes (exact), selection is add/sub/skip.
"""

import operator

from amaranth.hdl import Cat, Const, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["mix32_value", "mix32_pipeline", "MIX32_STAGES", "saturate_value", "Mix32", "EncoderLanes",
           "TraceLanes", "NeuronLanes", "DesireLanes", "UpdateLanes", "bit_length_value", "tree_sum",
           "tree_registers", "pipelined_tree_sum"]


# Jenkins' mix32, one function per step (adds, xors, constant shifts mod 2**32)
_MIX32_STEPS = (
    lambda a: (a + 0x7ED55D16 + (a << 12))[:32],
    lambda a: (a ^ 0xC761C23C ^ (a >> 19))[:32],
    lambda a: (a + 0x165667B1 + (a << 5))[:32],
    lambda a: ((a + 0xD3A2646C)[:32] ^ (a << 9)[:32])[:32],
    lambda a: (a + 0xFD7046C5 + (a << 3))[:32],
    lambda a: (a ^ 0xB55A4F09 ^ (a >> 16))[:32],
)
#: Step ranges of ``mix32_value`` for a three-stage pipeline: 2, 3 and 2 carry chains deep.
MIX32_STAGES = ((0, 2), (2, 4), (4, 6))


def mix32_value(a, first=0, last=len(_MIX32_STEPS)):
    """Jenkins' mix32 as an Amaranth expression, or only its steps ``first`` .. ``last - 1`` (a
    register between two such ranges splits its six carry chains over clock cycles)."""
    a = a.as_unsigned()[:32] if a.shape().width >= 32 else a.as_unsigned()
    for mix_step in _MIX32_STEPS[first:last]:
        a = mix_step(a)
    return a


def mix32_pipeline(m, a, name):
    """``mix32(a)`` through ``len(MIX32_STAGES) - 1`` registers in module ``m``: the result is
    that many cycles after ``a``, one new ``a`` per cycle."""
    for n, (first, last) in enumerate(MIX32_STAGES[:-1]):
        reg = Signal(32, name=f"{name}_mix{n}")
        m.d.sync += reg.eq(mix32_value(a, first, last))
        a = reg
    first, last = MIX32_STAGES[-1]
    return mix32_value(a, first, last)


def saturate_value(x, bits):
    """Clamp signed expression ``x`` to the ``bits``-bit signed range (a ``signed(bits)`` value).

    ``x`` is out of range when its bits from ``bits - 1`` up are not all equal (all copies of the
    sign): a reduction over those few bits, rather than two comparators as wide as ``x`` against
    the rails (two carry chains per lane).
    """
    x = Value.cast(x)
    if not x.shape().signed:
        x = Cat(x, Const(0, 1)).as_signed()
    if len(x) <= bits:
        return x
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    top = x[bits - 1:]
    inside = top.all() | ~top.any()
    return Mux(inside, x[:bits].as_signed(), Mux(x[-1], Const(lo, signed(bits)), Const(hi, signed(bits))))


def bit_length_value(x, width):
    """Leading-one position + 1 of an unsigned value (0 -> 0), as a priority chain."""
    result = Const(0, range(width + 1))
    for b in range(width):
        result = Mux(x[b], b + 1, result)
    return result


def _check_lanes(lanes):
    lanes = operator.index(lanes)
    if lanes < 1:
        raise ValueError(f"lane count must be >= 1, not {lanes!r}")
    return lanes


class Mix32(wiring.Component):
    """``o = mix32(i)`` through ``mix32_pipeline``: ``latency`` cycles, one ``i`` per cycle."""
    latency = len(MIX32_STAGES) - 1
    i: In(32)
    o: Out(32)

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        m.d.comb += self.o.eq(mix32_pipeline(m, self.i, "o"))
        return m


class EncoderLanes(wiring.Component):
    """Integrate-and-fire pixel coder on P lanes: tot = vin + pix; spike = tot >= pixel_max; vin' = tot - (spike ? pixel_max : 0)."""
    latency = 0

    def __init__(self, lanes, *, pixel_max=255):
        self.lanes = _check_lanes(lanes)
        self.pixel_max = pixel_max
        vbits = (2 * pixel_max - 1).bit_length()
        self.vin_bits = vbits
        super().__init__({
            "pix": In(data.ArrayLayout(unsigned(8), self.lanes)),
            "vin": In(data.ArrayLayout(unsigned(vbits), self.lanes)),
            "spike": Out(self.lanes),
            "vin_next": Out(data.ArrayLayout(unsigned(vbits), self.lanes)),
        })

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        for k in range(self.lanes):
            tot = self.vin[k] + self.pix[k]
            fire = tot >= self.pixel_max
            m.d.comb += [self.spike[k].eq(fire),
                         self.vin_next[k].eq(Mux(fire, tot - self.pixel_max, tot))]
        return m


class TraceLanes(wiring.Component):
    """Presynaptic trace on P lanes: x' = x - (x >> DS) + (s << FX), unsigned ``trace_bits`` wide."""
    latency = 0

    def __init__(self, lanes, *, trace_bits, decay_shift, frac_bits):
        self.lanes = _check_lanes(lanes)
        self.trace_bits, self.decay_shift, self.frac_bits = trace_bits, decay_shift, frac_bits
        layout = data.ArrayLayout(unsigned(trace_bits), self.lanes)
        super().__init__({"x": In(layout), "spike": In(self.lanes), "x_next": Out(layout)})

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        for k in range(self.lanes):
            x = self.x[k]
            m.d.comb += self.x_next[k].eq(x - (x >> self.decay_shift) + Mux(self.spike[k], 1 << self.frac_bits, 0))
        return m


class NeuronLanes(wiring.Component):
    """One membrane step on P lanes (golden ``forward`` inner loop):

    v1 = sat_VB(v - (v >> DS) + acc); fire = (v1 >= threshold) & keep; v' = fire ? v1 - threshold : v1.
    ``threshold`` is an input so the same lanes serve training and inference thresholds.

    Pipelined, one input set per cycle, ``v_next``/``fire`` ``latency`` = 2 cycles after the inputs:
    stage 1 registers the decayed v (v comes straight from block RAM), stage 2 the saturated sum; the
    compare and the reset subtraction run in parallel on the stage-2 register. ``acc`` is taken one
    cycle after the other inputs of its set, by stage 2, the first that uses it: the last weight word
    of a block may still be on its way into the accumulator when v is read.
    """
    latency = 2

    def __init__(self, lanes, *, membrane_bits, acc_bits, decay_shift, threshold_bits):
        self.lanes = _check_lanes(lanes)
        self.membrane_bits, self.acc_bits, self.decay_shift = membrane_bits, acc_bits, decay_shift
        self.threshold_bits = threshold_bits
        vl = data.ArrayLayout(signed(membrane_bits), self.lanes)
        super().__init__({
            "v": In(vl),
            "acc": In(data.ArrayLayout(signed(acc_bits), self.lanes)),
            "keep": In(self.lanes),
            "threshold": In(unsigned(threshold_bits)),
            "v_next": Out(vl),
            "fire": Out(self.lanes),
        })

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        keep1, keep2 = Signal(self.lanes), Signal(self.lanes)
        th1, th2 = Signal(unsigned(self.threshold_bits)), Signal(unsigned(self.threshold_bits))
        m.d.sync += [keep1.eq(self.keep), keep2.eq(keep1), th1.eq(self.threshold), th2.eq(th1)]
        for k in range(self.lanes):
            v = self.v[k]
            decayed = Signal(signed(self.membrane_bits + 1), name=f"decayed_{k}")
            m.d.sync += decayed.eq(v - (v >> self.decay_shift))
            v1 = Signal(signed(self.membrane_bits), name=f"v1_{k}")
            m.d.sync += v1.eq(saturate_value(decayed + self.acc[k], self.membrane_bits))
            # v1 >= threshold read from the sign of v1 - threshold, the reset value: one carry chain
            above = Signal(signed(max(self.membrane_bits, self.threshold_bits + 1) + 1), name=f"above_{k}")
            m.d.comb += above.eq(v1 - th2)
            fire = ~above[-1] & keep2[k]
            m.d.comb += [self.fire[k].eq(fire),
                         self.v_next[k].eq(Mux(fire, above[:self.membrane_bits], v1))]
        return m


class DesireLanes(wiring.Component):
    """Contribution of P post neurons to one hidden desire sum (golden ``hidden_desire``):

    term = sum_k g_k * e'_k * w_k, g_k = care&keep ? (want ? +1 : -1) : 0,
    e_k = want ? |TM - c_k| : c_k; pow2 mode: e' = 2**floor(log2 e) (0 if e == 0), one barrel shift;
    exact mode: e' = e, bit-serial over its ``interval`` = CBITS bits. Add/sub/skip only.

    An input set is taken in a cycle with ``start`` high; ``term`` is its sum ``latency`` cycles
    later. Stage 1 registers e_k and the signed weight g_k*w_k (the inputs come straight from block
    RAM, whose clock-to-out already takes a third of a 60 MHz cycle).
    pow2: one input set per cycle; stage 2 is the per-lane shift, then one register per two levels
    of the lane adder tree.
    exact: one input set per ``interval`` cycles; each cycle one bit plane of the e_k, most
    significant first, selects the g_k*w_k that enter the lane adder tree, and ``acc = 2*acc + tree``
    sums the planes. Five shifted copies of a weight per lane and their adders (a third of a lane on
    ECP5) become one select per lane, for CBITS cycles per word of the (short) hidden-desire phase.
    A lane negates without a carry chain: -w = ~w + 1, so a lane with g = -1 enters ~w and its
    e bit of the plane enters a P-input popcount beside the lane tree, whose own ``2*acc + tree``
    (a few bits wide) is added to ``acc`` once, in a last register, after the planes.
    """

    def __init__(self, lanes, *, weight_bits, count_bits, target_count, error_mode, sum_bits):
        self.lanes = _check_lanes(lanes)
        if error_mode not in ("pow2", "exact"):
            raise ValueError(f"error_mode must be 'pow2' or 'exact', not {error_mode!r}")
        self.weight_bits, self.count_bits, self.target_count = weight_bits, count_bits, target_count
        self.error_mode, self.sum_bits = error_mode, sum_bits
        self.e_bits = max(count_bits, target_count.bit_length())
        super().__init__({
            "w": In(data.ArrayLayout(signed(weight_bits), self.lanes)),
            "count": In(data.ArrayLayout(unsigned(count_bits), self.lanes)),
            "care": In(self.lanes), "want": In(self.lanes), "keep": In(self.lanes),
            "start": In(1),
            "term": Out(signed(sum_bits)),
        })

    @property
    def interval(self):
        """Cycles between two input sets."""
        return self.e_bits if self.error_mode == "exact" else 1

    @property
    def latency(self):
        if self.error_mode == "exact":
            return self.e_bits + tree_registers(self.lanes) + 2
        return 2 + tree_registers(self.lanes)

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        if self.error_mode == "pow2":
            return self._elaborate_pow2(m)
        ebits = self.e_bits
        es, ws, ons, flips = [], [], [], []
        for k in range(self.lanes):
            # loaded on start, then e shifted up a plane per cycle: e[-1] is the current plane
            e = Signal(unsigned(ebits), name=f"e_{k}")
            w = Signal(signed(self.weight_bits), name=f"w_{k}")
            on, flip = Signal(name=f"on_{k}"), Signal(name=f"flip_{k}")
            g_on = self.care[k] & self.keep[k]
            with m.If(self.start):
                m.d.sync += [e.eq(self._error(k)), w.eq(self.w[k]), on.eq(g_on), flip.eq(g_on & ~self.want[k])]
            with m.Else():
                m.d.sync += e.eq(e << 1)
            es.append(e); ws.append(w); ons.append(on); flips.append(flip)
        # g*w = w or ~w + 1: the lane enters w or ~w (one LUT per bit), the +1s go to the popcount
        leaves = [((w.as_unsigned() ^ flip.replicate(len(w))) & (e[-1] & on).replicate(len(w))).as_signed()
                  for e, w, on, flip in zip(es, ws, ons, flips)]
        ones = [Cat(e[-1] & flip, Const(0, 1)).as_signed() for e, flip in zip(es, flips)]
        plane = pipelined_tree_sum(m, leaves, name="plane")
        plane_ones = pipelined_tree_sum(m, ones, name="ones")
        # the most significant plane of a set (one cycle after start) restarts the sums; its flag
        # travels down the trees' registers with the plane
        first = Signal(name="first_plane")
        m.d.sync += first.eq(self.start)
        for n in range(tree_registers(self.lanes)):
            delayed = Signal(name=f"first_plane{n}")
            m.d.sync += delayed.eq(first)
            first = delayed
        # acc = term - sum of the e_k with g_k = -1, which is at most P * (2**ebits - 1)
        acc = Signal(signed(self.sum_bits + 1), name="plane_acc")
        ones_acc = Signal(unsigned(ebits + self.lanes.bit_length()), name="ones_acc")
        m.d.sync += [acc.eq(Mux(first, 0, acc << 1) + plane),
                     ones_acc.eq(Mux(first, 0, ones_acc << 1) + plane_ones)]
        term = Signal(signed(self.sum_bits), name="term")
        m.d.sync += term.eq(acc + ones_acc)
        m.d.comb += self.term.eq(term)
        return m

    def _error(self, k):
        """e_k = want ? |TM - c_k| : c_k."""
        c = self.count[k]
        return Mux(self.want[k], Mux(c > self.target_count, c - self.target_count, self.target_count - c), c)

    def _elaborate_pow2(self, m):
        ebits = self.e_bits
        terms = []
        for k in range(self.lanes):
            e = Signal(unsigned(ebits), name=f"e_{k}")
            # g*w before the shift: g*(w << s) == (g*w) << s, and the negation runs in parallel with e
            gw = Signal(signed(self.weight_bits + 1), name=f"gw_{k}")
            w = self.w[k].as_signed()
            g_on = self.care[k] & self.keep[k]
            m.d.sync += [e.eq(self._error(k)), gw.eq(Mux(g_on & self.start, Mux(self.want[k], w, -w), 0))]
            lead = Signal(range(ebits + 1), name=f"lead_{k}")
            term = Signal(signed(self.weight_bits + ebits + 2), name=f"term_{k}")
            m.d.comb += lead.eq(bit_length_value(e, ebits))
            m.d.sync += term.eq(Mux(lead == 0, 0, (gw << lead) >> 1))
            terms.append(term)
        # the order does not matter (exact sum)
        m.d.comb += self.term.eq(pipelined_tree_sum(m, terms))
        return m


def _tree_level(terms):
    """One level of a balanced adder tree: pairwise sums, an odd last term passed through."""
    nxt = [terms[a] + terms[a + 1] for a in range(0, len(terms) - 1, 2)]
    if len(terms) % 2:
        nxt.append(terms[-1])
    return nxt


def tree_sum(terms):
    """Exact sum of ``terms`` as a balanced (log-depth) adder tree."""
    while len(terms) > 1:
        terms = _tree_level(terms)
    return terms[0]


def tree_registers(count):
    """Registers ``pipelined_tree_sum`` puts in a tree of ``count`` terms (its latency)."""
    return ((count - 1).bit_length() + 1) // 2


def pipelined_tree_sum(m, terms, name="sum"):
    """Exact sum of the signed ``terms`` as a balanced adder tree in module ``m``, with a register
    after every second level and after the last (``tree_registers(len(terms))`` cycles; none for a
    single term). One set of terms per cycle."""
    level = 0
    while len(terms) > 1:
        terms = _tree_level(terms)
        level += 1
        if level % 2 == 0 or len(terms) == 1:
            staged = []
            for n, value in enumerate(terms):
                reg = Signal(signed(len(value)), name=f"{name}{level}_{n}")
                m.d.sync += reg.eq(value)
                staged.append(reg)
            terms = staged
    return terms[0]


class UpdateLanes(wiring.Component):
    """Weight update of P synapses of one input (golden ``update_layer``):

    mag = SH > 0 ? (A + round) >> SH : A << -SH, round = 2**(SH-1) (nearest) or ``offset`` (stochastic);
    w' = active ? sat_WB(w + (want ? mag : -mag)) : w.

    Pipelined, one input set per cycle, ``w_next`` ``latency`` = 3 cycles after the inputs: stage 1
    registers the inputs (A arrives from an adder behind a block RAM, w from block RAM), stage 2 the
    shifted magnitude and its rounding bit, stage 3 the signed add with saturation (the weight memory's
    write data then comes straight from a register: on the UP5K it is SPRAM, far across the die).
    ``offset`` is taken one cycle after the other inputs of its set, by stage 2, the first that uses
    it: a mix32 hash of the synapse index gets that cycle for its pipeline.
    """
    latency = 3

    def __init__(self, lanes, *, weight_bits, accum_bits, max_left_shift=0, stochastic=False):
        self.lanes = _check_lanes(lanes)
        self.weight_bits, self.accum_bits = weight_bits, accum_bits
        self.max_left_shift, self.stochastic = max_left_shift, stochastic
        wl = data.ArrayLayout(signed(weight_bits), self.lanes)
        members = {
            "w": In(wl), "accum": In(data.ArrayLayout(unsigned(accum_bits), self.lanes)),
            "active": In(self.lanes), "want": In(self.lanes),
            "shift": In(signed(8)),
            "w_next": Out(wl),
        }
        if stochastic:
            members["offset"] = In(data.ArrayLayout(unsigned(32), self.lanes))
        super().__init__(members)

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        mag_bits = max(self.accum_bits + 1, self.accum_bits + self.max_left_shift)
        # stage 1: inputs
        w1, w2 = Signal.like(self.w), Signal.like(self.w)
        a1 = Signal.like(self.accum)
        active1, active2 = Signal(self.lanes), Signal(self.lanes)
        want1, want2 = Signal(self.lanes), Signal(self.lanes)
        # the shift decoded into registers: its amounts steer every lane's shifter, lanes that sit
        # beside their weights' block RAMs all over the die (784-128-10 P=16 on ECP5)
        shr, shl, left = Signal(unsigned(6)), Signal(unsigned(6)), Signal()
        m.d.sync += [w1.eq(self.w), a1.eq(self.accum), active1.eq(self.active), want1.eq(self.want),
                     w2.eq(w1), active2.eq(active1), want2.eq(want1)]
        m.d.sync += [shr.eq(Mux(self.shift > 0, self.shift, 0)), shl.eq(Mux(self.shift < 0, -self.shift, 0)),
                     left.eq(self.shift < 0)]
        for k in range(self.lanes):
            a = a1[k]
            # stage 2: magnitude, and with nearest rounding its rounding bit apart:
            # (A + 2**(SH-1)) >> SH = (A >> SH) + bit SH-1 of A, and that bit becomes the carry-in of
            # stage 3's add, so the rounding needs no adder of its own
            mag = Signal(unsigned(mag_bits), name=f"mag_{k}")
            if self.stochastic:
                rnd = self.offset[k] & ~(Const(0xFFFFFFFF, 32) << shr)[:32]
                shifted, round_bit = (a + rnd) >> shr, Const(0, 1)
            else:
                # 2A >> SH: bits 1.. are A >> SH, bit 0 is bit SH-1 of A (0 when SH == 0)
                doubled = Cat(Const(0, 1), a) >> shr
                shifted, round_bit = doubled[1:], Signal(name=f"round_bit_{k}")
                m.d.sync += round_bit.eq(doubled[0])
            m.d.sync += mag.eq(Mux(left, a << shl, shifted) if self.max_left_shift else shifted)
            # stage 3: w + (mag + r) or w - (mag + r) = w + ~mag + (1 - r) as one carry chain: the
            # carry-in enters as the low bit of both operands, (2w + c) + (2t + c) = 2(w + t + c);
            # an inactive synapse adds 0 with carry 0, so saturating the sum leaves its w as it is
            w, negate, active = w2[k], ~want2[k], active2[k]
            mag_ext = Signal(signed(mag_bits + 1), name=f"mag_ext_{k}")
            m.d.comb += mag_ext.eq(mag)
            term = Mux(active, Mux(negate, ~mag_ext, mag_ext), 0)
            carry = active & (negate ^ round_bit)
            total = (Cat(carry, w).as_signed() + Cat(carry, term).as_signed())[1:].as_signed()
            w_next = Signal(signed(self.weight_bits), name=f"w_next_{k}")
            m.d.sync += w_next.eq(saturate_value(total, self.weight_bits))
            m.d.comb += self.w_next[k].eq(w_next)
        return m
