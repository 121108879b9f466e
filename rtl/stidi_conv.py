"""Conv and pooling pieces of the binarized STiDi-BP core (issue #11, item 3), each a ``wiring.Component``.

Each piece mirrors part of one function of the integer golden model ``mfsnn.golden.stidi_fixed`` (spec:
docs/golden-spec-stidi.md, cited as §n) and is unit-tested against it under Amaranth's simulator
(tests/test_rtl_stidi_conv.py):

* ``ConvTap``: the address of one kernel tap of one output position, ``stage.patches`` /
  ``stage.interior`` of ``golden.stidi.build_stages`` (zero padding = a pre that never fires);
* ``StepCurrents``: the per-step current ``C[t]`` of P conv neurons (output channels) from their
  window's spikes (``conv_currents`` of one position and P channels), drained step by step into
  ``IntegrateLanes``;
* ``PoolScan``: the k x k windows of min-time pooling in row-major window order (``min_pool``'s
  windows; ``unpool``'s scatter back to the argmin), over a map whose words hold P channels;
* ``ConvUpdateLanes``: the update of one shared weight summed over the positions with one
  saturation (``conv_backward``'s update);
* ``ScatterAdd``: the displacement scatter ``D[pre] += term`` as a read-modify-write of a memory
  (``conv_backward``'s ``scatter_sum``; exact, no saturation, as the golden model).

Neuron indices are flat and channel-major as in the golden model: a (C, H, W) map's neuron
``(c, y, x)`` is ``c*H*W + y*W + x``. Nothing multiplies data by data; index arithmetic adds
constants, and the constants that need products (tap offsets) are computed on the host at elaboration.
"""


from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .stidi_lanes import _count, _eligible, _saturate, signed_bits

__all__ = ["ConvTap", "StepCurrents", "PoolScan", "ConvUpdateLanes", "ScatterAdd", "conv_accumulator_bits"]


def _time_bits(time_steps):
    return time_steps.bit_length()


def conv_accumulator_bits(positions, time_steps, levels):
    """Width of the conv weight accumulator ``A = sum over positions of s*step`` (§3: |A| <= P*(T << Q),
    P = H*W positions): s24 for 28x28 and s22 for 14x14 at T = 101, Q = 6."""
    return signed_bits(positions * (time_steps << levels))


class ConvTap(wiring.Component):
    """Pre-synaptic neuron of kernel tap ``tap`` = (ci, ky, kx) (row-major, the golden fan-in order) at
    output position ``pos`` = (``y``, ``x``) of a stride-1 'same' convolution over a (Cin, H, W) map:

        pre    = ci*H*W + (y + ky - k//2)*W + (x + kx - k//2) = pos + offset[tap]
        inside = 0 <= y + ky - k//2 < H and 0 <= x + kx - k//2 < W    (outside: zero padding)

    ``offset``, ``ky`` and ``kx`` per tap are a host-computed ROM (products of constants), read
    asynchronously: combinational (``latency`` 0). ``pre`` is only meaningful when ``inside``.
    """
    latency = 0

    def __init__(self, *, channels, height, width, kernel):
        self.channels = _count("channels", channels)
        self.height = _count("height", height)
        self.width = _count("width", width)
        self.kernel = _count("kernel", kernel)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, not {kernel!r}")
        self.taps = self.channels * self.kernel * self.kernel            # host-side constant
        self.positions = self.height * self.width
        self.size = self.channels * self.positions
        super().__init__({
            "tap": In(range(self.taps)),
            "y": In(range(self.height)),
            "x": In(range(self.width)),
            "pos": In(range(self.positions)),
            "pre": Out(range(self.size)),
            "inside": Out(1),
        })

    def rom(self):
        """(offset, ky, kx) per tap, host side."""
        k, pad = self.kernel, self.kernel // 2
        return [(ci * self.positions + (ky - pad) * self.width + (kx - pad), ky, kx)
                for ci in range(self.channels) for ky in range(k) for kx in range(k)]

    def elaborate(self, platform):
        m = Module()
        k, pad = self.kernel, self.kernel // 2
        offset_shape = signed(signed_bits(max(self.size, self.width * pad + pad)))
        layout = data.StructLayout({"offset": offset_shape, "ky": range(k), "kx": range(k)})
        init = [{"offset": o, "ky": ky, "kx": kx} for o, ky, kx in self.rom()]
        m.submodules.rom = rom = Memory(shape=layout, depth=len(init), init=init)
        port = rom.read_port(domain="comb")
        m.d.comb += port.addr.eq(self.tap)
        entry = port.data
        row = self.y + entry.ky                  # y + ky, compared with the padded bounds
        col = self.x + entry.kx
        m.d.comb += [
            self.inside.eq((row >= pad) & (row < self.height + pad) & (col >= pad) & (col < self.width + pad)),
            self.pre.eq((self.pos + entry.offset)[:len(self.pre)]),
        ]
        return m


class StepCurrents(wiring.Component):
    """Per-step current of ``lanes`` conv neurons (P output channels at one position, which see the
    same window): ``C_q[t] = sum of the forward weights of channel q's window taps that spike at t``
    (golden ``conv_currents`` for one position and P output channels), in a T-word memory of P lanes
    of ``signed_bits(fan_in)`` bits.

    * ``add``: one tap per cycle, ``add_t`` its spike time (< T-1; the core filters) and
      ``add_negative`` the sign bits of its P weights (sign(0) = +1): ``C_q[add_t] += negative_q ? -1 : +1``.
      A read-modify-write one cycle long; the read port is transparent, so equal times in
      consecutive cycles add up.
    * ``drain``: ``current`` = C[``drain_t``] ``latency`` 1 cycle later, and that word is cleared;
      draining every step 0..T-1 leaves the memory zero for the next neurons.

    The core must not add and drain in the same cycle, and starts draining one cycle after the
    last add (the add's write).
    """
    latency = 1

    def __init__(self, *, lanes=1, fan_in, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.fan_in = _count("fan_in", fan_in)
        self.time_steps = _count("time_steps", time_steps, 2)
        self.current_bits = signed_bits(self.fan_in)
        self.word = data.ArrayLayout(signed(self.current_bits), self.lanes)
        super().__init__({
            "add": In(1), "add_t": In(range(self.time_steps)), "add_negative": In(self.lanes),
            "drain": In(1), "drain_t": In(range(self.time_steps)),
            "current": Out(self.word),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = Memory(shape=self.word, depth=self.time_steps, init=[])
        write = buf.write_port()
        read = buf.read_port(transparent_for=(write,))
        add_v, add_t, add_neg = Signal(), Signal.like(self.add_t), Signal.like(self.add_negative)
        drain_v, drain_t = Signal(), Signal.like(self.drain_t)
        m.d.sync += [add_v.eq(self.add), add_t.eq(self.add_t), add_neg.eq(self.add_negative),
                     drain_v.eq(self.drain), drain_t.eq(self.drain_t)]
        m.d.comb += read.addr.eq(Mux(self.add, self.add_t, self.drain_t))
        m.d.comb += self.current.eq(read.data)
        with m.If(add_v):
            m.d.comb += [write.addr.eq(add_t), write.en.eq(1)]
            m.d.comb += [write.data[q].eq(read.data[q] + Mux(add_neg[q], -1, 1)) for q in range(self.lanes)]
        with m.Elif(drain_v):
            m.d.comb += [write.addr.eq(drain_t), write.en.eq(1), write.data.eq(0)]
        return m


class PoolScan(wiring.Component):
    """Walks the k x k windows of a (C, H, W) map (stride k, no padding), one tap per ``advance``:
    pooled neuron ``pooled`` = (c, py, px) in flat order, tap ``tap`` = ky*k + kx in row-major window
    order (golden ``min_pool``'s order, so a strict ``<`` keeps the first minimum), and the tap's
    neuron of the map: word ``pre`` = (c // P)*H*W + (py*k + ky)*W + px*k + kx, lane ``lane`` = c % P
    of a map whose words hold ``lanes`` = P channels at one position (a conv stage's, at P = 1 the
    flat index).

    ``start`` restarts at pooled 0, tap 0. ``first``/``last`` mark a window's first and last tap,
    ``done`` the last tap of the last window. Every index is a counter or a running sum of constants.
    """
    latency = 0

    def __init__(self, *, lanes=1, channels, height, width, kernel):
        self.lanes = _count("lanes", lanes)
        self.channels = _count("channels", channels)
        self.height = _count("height", height)
        self.width = _count("width", width)
        self.kernel = _count("kernel", kernel, 2)
        if self.height % self.kernel or self.width % self.kernel:
            raise ValueError(f"a {kernel}x{kernel} pooling needs the map side ({height}x{width}) to be a multiple")
        self.pooled_width = self.width // self.kernel
        self.pooled_height = self.height // self.kernel
        self.pooled_size = self.channels * self.pooled_height * self.pooled_width
        self.words = -(-self.channels // self.lanes) * self.height * self.width
        super().__init__({
            "start": In(1), "advance": In(1),
            "pooled": Out(range(self.pooled_size)),
            "tap": Out(range(self.kernel * self.kernel)),
            "pre": Out(range(self.words)),
            "lane": Out(range(self.lanes)),
            "first": Out(1), "last": Out(1), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        k, W, HW = self.kernel, self.width, self.height * self.width
        kx = Signal(range(k))
        ky = Signal(range(k))
        px = Signal(range(self.pooled_width))
        py = Signal(range(self.pooled_height))
        span = range(self.words + HW)
        base = Signal(span)        # (c // P)*H*W: the channel's first word
        line = Signal(span)        # base + py*k*W: the first map row of the window row
        corner = Signal(span)      # line + px*k: the window's top-left word
        row = Signal(span)         # corner + ky*W
        m.d.comb += [self.pre.eq(row + kx), self.tap.eq(self.tap_counter(m, kx, ky)),
                     self.first.eq((kx == 0) & (ky == 0)), self.last.eq((kx == k - 1) & (ky == k - 1)),
                     self.done.eq(self.last & (self.pooled == self.pooled_size - 1))]
        with m.If(self.start):
            m.d.sync += [kx.eq(0), ky.eq(0), px.eq(0), py.eq(0), base.eq(0), line.eq(0), corner.eq(0), row.eq(0),
                         self.lane.eq(0), self.pooled.eq(0)]
        with m.Elif(self.advance):
            with m.If(kx != k - 1):
                m.d.sync += kx.eq(kx + 1)
            with m.Elif(ky != k - 1):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1), row.eq(row + W)]
            with m.Else():                                # next window
                m.d.sync += [kx.eq(0), ky.eq(0), self.pooled.eq(self.pooled + 1)]
                with m.If(px != self.pooled_width - 1):
                    m.d.sync += [px.eq(px + 1), corner.eq(corner + k), row.eq(corner + k)]
                with m.Elif(py != self.pooled_height - 1):    # next window row
                    m.d.sync += [px.eq(0), py.eq(py + 1), line.eq(line + k * W), corner.eq(line + k * W),
                                 row.eq(line + k * W)]
                with m.Else():                            # next channel: the next lane of the words, or the next words
                    m.d.sync += [px.eq(0), py.eq(0)]
                    self._next_channel(m, base, (line, corner, row), HW)
        return m

    def _next_channel(self, m, base, starts, HW):
        """Channel c + 1 starts at lane c % P + 1 of the same words, or at lane 0 of the next H*W
        (always at P = 1)."""
        with m.If(self.lane != self.lanes - 1):
            m.d.sync += [self.lane.eq(self.lane + 1)] + [start.eq(base) for start in starts]
        with m.Else():
            m.d.sync += [self.lane.eq(0), base.eq(base + HW)] + [start.eq(base + HW) for start in starts]

    def tap_counter(self, m, kx, ky):
        """ky*k + kx as a counter (no product): +1 per advance inside a window, 0 at a window's start."""
        tap = Signal(range(self.kernel * self.kernel), name="tap_index")
        with m.If(self.start):
            m.d.sync += tap.eq(0)
        with m.Elif(self.advance):
            m.d.sync += tap.eq(Mux(self.last, 0, tap + 1))
        return tap


class ConvUpdateLanes(wiring.Component):
    """Update of shared conv weights (§9.1–9.2; golden ``conv_backward``'s update), one post position
    per cycle and lane (lane = one weight):

        g = ((t_post - t_pre) << level + 2**(R-1)) >> R     (R = ``lr_shift``; no rounding at R = 0)
        A = sum over the positions with the mask of s*g     (``first`` restarts A with this position)
        w_next = sat_WBITS(w - A)                           (one saturation per weight)

    The mask is the FC update's (``_eligible``): the pre fired (t_pre < T: padding and dropped pres
    come in as T), ``keep``, t_pre <= t_post, s != 0. A has ``conv_accumulator_bits(positions, T, Q)``
    bits (the spec's bound, never wraps) and ``w - A`` one more; the golden model saturates only
    the result. ``valid`` marks input cycles; ``total`` (A) and ``w_next`` are ready ``latency`` = 3
    cycles after the last position went in (stage 1 registers the inputs, stage 2 the signed step,
    stage 3 the sum). ``w`` may arrive any time before ``w_next`` is taken.
    """
    latency = 3

    def __init__(self, *, lanes=1, positions, weight_bits=16, levels=6, max_lr_shift=15, time_steps=101):
        self.lanes = _count("lanes", lanes)
        self.positions = _count("positions", positions)
        self.weight_bits = _count("weight_bits", weight_bits, 2)
        self.levels = _count("levels", levels, 0)
        self.max_lr_shift = _count("max_lr_shift", max_lr_shift, 0)
        self.time_steps = _count("time_steps", time_steps, 2)
        self.time_bits = _time_bits(self.time_steps)
        self.step_bits = self.time_bits + self.levels + 1
        self.acc_bits = conv_accumulator_bits(self.positions, self.time_steps, self.levels)
        self.diff_bits = max(self.acc_bits, self.weight_bits) + 1
        tl = data.ArrayLayout(unsigned(self.time_bits), self.lanes)
        wl = data.ArrayLayout(signed(self.weight_bits), self.lanes)
        super().__init__({
            "valid": In(1), "first": In(1),
            "t_pre": In(tl), "t_post": In(tl), "keep": In(self.lanes),
            "sign": In(data.ArrayLayout(signed(2), self.lanes)),
            "level": In(data.ArrayLayout(range(self.levels + 1), self.lanes)),
            "lr_shift": In(range(self.max_lr_shift + 1)),
            "w": In(wl),
            "total": Out(data.ArrayLayout(signed(self.acc_bits), self.lanes)),
            "w_next": Out(wl),
        })

    def elaborate(self, platform):
        m = Module()
        v1, first1 = Signal(), Signal()
        t_pre1, t_post1 = Signal.like(self.t_pre), Signal.like(self.t_post)
        keep1, sign1, level1 = Signal.like(self.keep), Signal.like(self.sign), Signal.like(self.level)
        shift1 = Signal.like(self.lr_shift)
        m.d.sync += [v1.eq(self.valid), first1.eq(self.first), t_pre1.eq(self.t_pre), t_post1.eq(self.t_post),
                     keep1.eq(self.keep), sign1.eq(self.sign), level1.eq(self.level), shift1.eq(self.lr_shift)]
        v2, first2 = Signal(), Signal()
        m.d.sync += [v2.eq(v1), first2.eq(first1)]
        half = (Const(1, 1) << shift1) >> 1
        for k in range(self.lanes):
            eligible = _eligible(t_pre1[k], t_post1[k], keep1[k], sign1[k], self.time_steps)
            distance = (t_post1[k] - t_pre1[k])[:self.time_bits]
            step = Signal(unsigned(self.step_bits), name=f"step_{k}")
            m.d.comb += step.eq(((distance << level1[k]) + half) >> shift1)
            term = Signal(signed(self.step_bits + 1), name=f"term_{k}")
            m.d.sync += term.eq(Mux(eligible, Mux(sign1[k] < 0, -step, step), 0))
            acc = Signal(signed(self.acc_bits), name=f"acc_{k}")
            with m.If(v2):
                m.d.sync += acc.eq(Mux(first2, 0, acc) + term)
            diff = Signal(signed(self.diff_bits), name=f"diff_{k}")
            m.d.comb += [diff.eq(self.w[k] - acc), self.total[k].eq(acc),
                         self.w_next[k].eq(_saturate(diff, self.weight_bits))]
        return m


class ScatterAdd(wiring.Component):
    """``D[addr] += term`` into a memory the core owns, one term per cycle (golden ``scatter_sum``,
    the conv displacement, §9.3): the core connects ``read``/``write`` to a read port that is
    transparent for that write port, so consecutive terms to one address add up. Exact: D has the
    core's displacement width (the spec's bound), nothing saturates. ``latency`` 1: a term's sum is
    written the cycle after it came in."""
    latency = 1

    def __init__(self, *, depth, d_bits, term_bits):
        self.depth = _count("depth", depth)
        self.d_bits = _count("d_bits", d_bits, 2)
        self.term_bits = _count("term_bits", term_bits, 2)
        super().__init__({
            "valid": In(1), "addr": In(range(self.depth)), "term": In(signed(self.term_bits)),
            "read": Out(wiring.Signature({"addr": Out(range(self.depth)), "data": In(signed(self.d_bits))})),
            "write": Out(wiring.Signature({"addr": Out(range(self.depth)), "data": Out(signed(self.d_bits)),
                                           "en": Out(1)})),
        })

    def elaborate(self, platform):
        m = Module()
        v1, addr1, term1 = Signal(), Signal.like(self.addr), Signal.like(self.term)
        m.d.sync += [v1.eq(self.valid), addr1.eq(self.addr), term1.eq(self.term)]
        m.d.comb += self.read.addr.eq(self.addr)
        m.d.comb += [self.write.addr.eq(addr1), self.write.en.eq(v1),
                     self.write.data.eq(self.read.data + term1)]
        return m
