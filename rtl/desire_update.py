"""The desire-BP core's weight update: golden ``update_layer`` for l = 1 .. L (``UpdateLanes``:
rounding shift, add/sub, saturation)."""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .desire_masks import MIX_LATENCY
from .desire_ports import Phase, keep_bits, phase_members, read_block_flags, start_state
from .lanes import UpdateLanes
from .memories import COLLISION_ATTR

__all__ = ["DesireUpdate"]


class DesireUpdate(Phase):
    """Per layer l, per post block with an active neuron (care & keep & count > 0):

    * ``U_RD_l`` / ``U_EX_l``: the block's active and want bits;
    * ``UT_l``: the steps at which an active lane spiked go into the step list (<= T entries: the
      step's trace-word base and the lanes' raster bits); ``UT_DRAIN_l`` clears the sums;
    * ``UW_RD_l`` / ``UW_LD_l``: the next word of inputs that spiked at least once this sample
      (any other input has a zero trace at every step, so A = 0 and its weight stays: exact);
    * ``UI_l``: per such input one cycle per listed step (its trace word, lane-selected, is added
      to the lanes that spiked then), and on the last one its weight word goes through
      ``UpdateLanes`` and is written ``latency`` cycles later; ``UI_DRAIN_l`` waits for the
      block's last word.

    With stochastic rounding the synapse's offset is hashed from ``round_key`` on the core's mix32
    bank (``hash_in`` / ``hash_out``).
    """

    def __init__(self, params):
        self.params = p = params
        layers = range(1, p.L + 1)
        reads = [f"{kind}{l}" for l in layers for kind in ("c", "care", "want", "r", "ever", "x", "w")]
        reads += [f"mask{l}" for l in layers if p.maskable(l)]
        members = {**phase_members(p, reads, [f"w{l}" for l in layers]), "train": In(1), "shift": In(signed(8))}
        if p.cfg.rounding == "stochastic":
            lanes = data.ArrayLayout(unsigned(32), p.P)
            members.update({"round_key": In(32), "hash_in": Out(lanes), "hash_out": In(lanes)})
        super().__init__(members)

    def elaborate(self, platform):
        p = self.params
        m = Module()
        s = self._registers(m)
        with m.FSM():
            start_state(m)
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [s.b.eq(0), s.bbase.eq(0)]
                    m.next = "U_RD_1"
            for l in range(1, p.L + 1):
                self._block_states(m, s, l)
                self._input_states(m, s, l)
        for l in range(1, p.L + 1):
            self._stages(m, s, l)
        return m

    def _registers(self, m):
        p, cfg = self.params, self.params.cfg
        P, lg, L, T = p.P, p.lg, p.L, cfg.time_steps
        s = SimpleNamespace()
        s.ul = m.submodules.update = UpdateLanes(P, weight_bits=cfg.weight_bits, accum_bits=p.accum_bits,
                                                 max_left_shift=p.max_left_shift,
                                                 stochastic=cfg.rounding == "stochastic")
        maxnb = max(p.blocks(l) for l in range(1, L + 1))
        maxn_in = max(p.sizes[:-1])
        s.b = Signal(range(maxnb + 1))             # post block
        s.bbase = Signal(p.addr_bits + 1)          # its first weight word
        s.rd_blk = Signal.like(s.b)                # block whose read data arrives
        s.layer = Signal(range(L + 1))             # layer of UT..UI (selects its stages)
        s.act, s.want = Signal(P), Signal(P)       # the block's active and want bits
        s.tt = Signal(range(T + 1))                # step of UT
        s.rtb = Signal(max(ceil_log2(T * maxnb), 1) + 1)                          # its raster word
        s.xtb = Signal(max(ceil_log2(T * max(p.blocks(x) for x in range(L))), 1) + 1)  # its trace words' base
        s.nt = Signal(range(T + 1))                # entries of the step list
        # The steps at which an active lane of the post block spiked, in a small memory rather than
        # T registers: UT writes them in order, UI reads entry e (issued a cycle ahead) for every
        # visited input. Written by the t-scan stage (UT and UT_DRAIN), read from UW_LD on: never in
        # one cycle (COLLISION_ATTR)
        step_list = m.submodules.step_list = Memory(
            shape=data.StructLayout({"x": s.xtb.shape(), "r": unsigned(P)}), depth=max(T, 2), init=[],
            attrs={COLLISION_ATTR: "1"})
        s.st_r, s.st_w = step_list.read_port(), step_list.write_port()
        s.k = Signal(range(max(p.blocks(x) for x in range(L)) + 1))   # input word of UW/UI
        s.kbase = Signal(max(ceil_log2(maxn_in), 1) + 1)              # its first input
        s.pend = Signal(P)                         # inputs of the word that spiked, not yet visited
        s.e = Signal(range(T + 1))                 # step-list entry of UI
        s.accum = Signal(data.ArrayLayout(unsigned(p.accum_bits), P))  # A of the input's P synapses
        # the stages: ut1 = raster word arrives; u1 = trace word arrives; u2 = the trace word
        # lane-selected, registered before the accumulate, and (weight_read_latency 2) the weight
        # word arrives, straight into UpdateLanes' input register; uw = the UpdateLanes delay line
        # of the weight word's address (the same latency for every layer)
        s.ut1_v, s.ut1_xtb = Signal(), Signal.like(s.xtb)
        s.u1_v, s.u1_last, s.u1_rbits, s.u1_lane = Signal(), Signal(), Signal(P), Signal(max(lg, 1))
        s.u1_i = Signal(range(maxn_in + 1))
        s.u2_v, s.u2_last, s.u2_rbits, s.u2_i = Signal(), Signal(), Signal(P), Signal.like(s.u1_i)
        s.u2_x = Signal(unsigned(cfg.trace_bits))
        s.uw_v = [Signal(name=f"uw_v{n}") for n in range(s.ul.latency)]
        s.uw_addr = [Signal(p.addr_bits, name=f"uw_addr{n}") for n in range(s.ul.latency)]
        for n in range(1, s.ul.latency):
            m.d.sync += [s.uw_v[n].eq(s.uw_v[n - 1]), s.uw_addr[n].eq(s.uw_addr[n - 1])]
        m.d.sync += [s.ut1_v.eq(0), s.u1_v.eq(0), s.u2_v.eq(0), s.uw_v[0].eq(0)]
        if cfg.rounding == "stochastic":
            # the rounding offsets, hashed from the synapse index issued in UI, are due at UpdateLanes'
            # stage 2, three cycles after UI (u1 data arrival, u2 accumulate, stage 1)
            if MIX_LATENCY > 3:
                raise ValueError(f"the rounding hash takes {MIX_LATENCY} cycles; UpdateLanes needs it after 3")
            offset = self.hash_out
            for n in range(3 - MIX_LATENCY):
                delayed = [Signal(32, name=f"round{q}_pad{n}") for q in range(P)]
                m.d.sync += [delayed[q].eq(offset[q]) for q in range(P)]
                offset = delayed
            m.d.comb += [s.ul.offset[q].eq(offset[q]) for q in range(P)]
        return s

    def _block_states(self, m, s, l):
        p, T = self.params, self.params.cfg.time_steps
        nbo, nw = p.blocks(l), p.blocks(l - 1)
        with m.State(f"U_RD_{l}"):
            read_block_flags(m, p, self, l, s.b, s.rd_blk)
            m.next = f"U_EX_{l}"
        with m.State(f"U_EX_{l}"):
            spiked = Cat(*[self._read(f"c{l}").data[q] != 0 for q in range(p.P)])
            active = self._read(f"care{l}").data & keep_bits(p, self, l, self.train, s.rd_blk) & spiked
            m.d.sync += [s.act.eq(active), s.want.eq(self._read(f"want{l}").data), s.tt.eq(0), s.nt.eq(0),
                         s.rtb.eq(s.rd_blk), s.xtb.eq(0)]
            with m.If(active != 0):
                m.next = f"UT_{l}"
            with m.Else():
                self._next_block(m, s, l)
        with m.State(f"UT_{l}"):
            m.d.sync += s.layer.eq(l)
            m.d.comb += self._read(f"r{l}").addr.eq(s.rtb)
            m.d.sync += [s.ut1_v.eq(1), s.ut1_xtb.eq(s.xtb), s.rtb.eq(s.rtb + nbo), s.xtb.eq(s.xtb + nw),
                         s.tt.eq(s.tt + 1)]
            with m.If(s.tt == T - 1):
                m.next = f"UT_DRAIN_{l}"
        with m.State(f"UT_DRAIN_{l}"):
            m.d.sync += s.layer.eq(l)
            m.d.sync += [s.k.eq(0), s.e.eq(0)]
            m.d.sync += [s.accum[q].eq(0) for q in range(p.P)]
            m.next = f"UW_RD_{l}"

    def _next_block(self, m, s, l):
        """After a post block: the next block of this layer, or the next layer, or done."""
        p = self.params
        with m.If(s.rd_blk == p.blocks(l) - 1):
            m.d.sync += [s.b.eq(0), s.bbase.eq(0)]
            if l < p.L:
                m.next = f"U_RD_{l + 1}"
            else:
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        with m.Else():
            m.d.sync += [s.b.eq(s.b + 1), s.bbase.eq(s.bbase + p.sizes[l - 1])]
            m.next = f"U_RD_{l}"

    def _input_states(self, m, s, l):
        p = self.params
        P, lg, nw = p.P, p.lg, p.blocks(l - 1)
        with m.State(f"UW_RD_{l}"):
            m.d.sync += s.layer.eq(l)
            m.d.comb += self._read(f"ever{l}").addr.eq(s.k)
            m.next = f"UW_LD_{l}"
        with m.State(f"UW_LD_{l}"):
            m.d.sync += s.layer.eq(l)
            ever = self._read(f"ever{l}").data
            m.d.sync += [s.pend.eq(ever), s.kbase.eq(s.k << lg), s.e.eq(0)]
            m.d.comb += s.st_r.addr.eq(0)
            with m.If(ever != 0):
                m.next = f"UI_{l}"
            with m.Elif(s.k == nw - 1):
                m.next = f"UI_DRAIN_{l}"
            with m.Else():
                m.d.sync += s.k.eq(s.k + 1)
                m.next = f"UW_RD_{l}"
        with m.State(f"UI_{l}"):
            m.d.sync += s.layer.eq(l)
            bit = Signal(max(lg, 1), name=f"ubit{l}")
            for q in reversed(range(P)):
                with m.If(s.pend[q]):
                    m.d.comb += bit.eq(q)
            i = (s.kbase | bit) if lg else s.kbase
            m.d.comb += [self._read(f"x{l}").addr.eq(s.st_r.data.x + s.k), self._read(f"w{l}").addr.eq(s.bbase + i)]
            last_e = s.e == s.nt - 1
            if p.cfg.rounding == "stochastic":
                # synapse (j, i)'s rounding hash reaches UpdateLanes' stage 2 with its word
                for q in range(P):
                    j = Cat(Const(q, lg), s.rd_blk) if lg else s.rd_blk
                    m.d.comb += self.hash_in[q].eq(self.round_key ^ (l << 24) ^ (j << 12) ^ i)
            # single-port W_l: the entry that reads the weight word waits while a word is written
            w_busy = s.uw_v[-1] if f"w{l}" in p.single_port else Const(0)
            # the step-list entry of the next cycle: this one again (stalled), the first (last entry
            # of an input) or the next one
            m.d.comb += s.st_r.addr.eq(Mux(last_e, Mux(w_busy, s.e, 0), s.e + 1))
            with m.If(~(last_e & w_busy)):
                m.d.sync += [s.u1_v.eq(1), s.u1_last.eq(last_e), s.u1_rbits.eq(s.st_r.data.r), s.u1_i.eq(i)]
                if lg:
                    m.d.sync += s.u1_lane.eq(bit)
                with m.If(last_e):
                    rest = s.pend & (s.pend - 1)
                    m.d.sync += [s.e.eq(0), s.pend.eq(rest)]
                    with m.If(rest == 0):
                        with m.If(s.k == nw - 1):
                            m.next = f"UI_DRAIN_{l}"
                        with m.Else():
                            m.d.sync += s.k.eq(s.k + 1)
                            m.next = f"UW_RD_{l}"
                with m.Else():
                    m.d.sync += s.e.eq(s.e + 1)
        with m.State(f"UI_DRAIN_{l}"):
            m.d.sync += s.layer.eq(l)
            # the block's last weight word is written in this cycle at the latest
            with m.If(~s.u1_v & ~s.u2_v & ~Cat(0, *s.uw_v[:-1]).any()):
                self._next_block(m, s, l)

    def _stages(self, m, s, l):
        P, lg, ul = self.params.P, self.params.lg, s.ul
        mine = s.layer == l
        # t-scan stage: raster word arrived
        with m.If(s.ut1_v & mine):
            rb = self._read(f"r{l}").data & s.act
            with m.If(rb != 0):
                m.d.comb += [s.st_w.addr.eq(s.nt), s.st_w.data.x.eq(s.ut1_xtb), s.st_w.data.r.eq(rb), s.st_w.en.eq(1)]
                m.d.sync += s.nt.eq(s.nt + 1)
        # arrival stage: trace word -> registers
        with m.If(s.u1_v & mine):
            xw = self._read(f"x{l}").data
            m.d.sync += [s.u2_v.eq(1), s.u2_last.eq(s.u1_last), s.u2_rbits.eq(s.u1_rbits), s.u2_i.eq(s.u1_i),
                         s.u2_x.eq(Array(xw[q] for q in range(P))[s.u1_lane] if lg else xw[0])]
        # accumulate stage: the word's trace into the lanes that spiked at its step
        with m.If(s.u2_v & mine):
            new_acc = [Mux(s.u2_rbits[q], s.accum[q] + s.u2_x, s.accum[q]) for q in range(P)]
            with m.If(s.u2_last):
                w_word = self._read(f"w{l}").data   # read in UI with this entry, two cycles ago
                for q in range(P):
                    m.d.comb += [ul.accum[q].eq(new_acc[q]), ul.w[q].eq(w_word[q])]
                m.d.comb += [ul.active.eq(s.act), ul.want.eq(s.want), ul.shift.eq(self.shift)]
                m.d.sync += [s.uw_v[0].eq(1), s.uw_addr[0].eq(s.bbase + s.u2_i)]
                m.d.sync += [s.accum[q].eq(0) for q in range(P)]
            with m.Else():
                m.d.sync += [s.accum[q].eq(new_acc[q]) for q in range(P)]
        # write stage: the updated weight word leaves UpdateLanes (the port driven unconditionally,
        # as X_l's in the scan stage)
        w_write = getattr(self, f"w{l}_write")
        m.d.comb += [w_write.addr.eq(s.uw_addr[-1]), w_write.en.eq(s.uw_v[-1] & mine), w_write.data.eq(ul.w_next)]
