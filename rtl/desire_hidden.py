"""The desire-BP core's hidden desire: golden ``hidden_desire`` for l = L .. 2, shift and
add/sub/skip only (``DesireLanes``)."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from amaranth.utils import ceil_log2

from .desire_ports import DebugKind, Phase, debug_emitter, keep_bits, phase_members, read_block_flags, start_state
from .lanes import DesireLanes
from .memories import COLLISION_ATTR

__all__ = ["DesireHidden"]


class DesireHidden(Phase):
    """Care/want of layer l-1 from layer l's, for l = L .. 2 (only built for L >= 2).

    * ``G_RD_l`` / ``G_EX_l``: the post blocks of layer l with a non-zero g (care & keep) go into
      the block list (block, its first weight word);
    * ``H_l``: for every input i of layer l, every listed block's W_l word and desire state enter
      ``DesireLanes`` (one per ``interval``); at the end of its delay line the term is added to D_i,
      and the finished D_i gives care/want of input i, written a word of P inputs at a time
      (DESIRE_HID records); ``H_DRAIN_l`` waits for the whole line.
    """

    def __init__(self, params):
        self.params = p = params
        layers = range(2, p.L + 1)
        reads = [f"{kind}{l}" for l in layers for kind in ("c", "care", "want", "w")]
        if p.cfg.hidden_satisfied_count:        # the satisfied check reads the counts of layer l-1 too
            reads += [f"c{l - 1}" for l in layers if l - 1 not in layers]
        reads += [f"mask{l}" for l in layers if p.maskable(l)]
        writes = [f"{kind}{l - 1}" for l in layers for kind in ("care", "want")]
        super().__init__({**phase_members(p, reads, writes), "train": In(1)})

    def elaborate(self, platform):
        p = self.params
        m = Module()
        s = self._registers(m)
        s.emit = debug_emitter(m, self)
        with m.FSM():
            start_state(m)
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [s.b.eq(0), s.bbase.eq(0), s.nact.eq(0)]
                    m.next = f"G_RD_{p.L}"
            for l in range(p.L, 1, -1):
                self._states(m, s, l)
        for l in range(p.L, 1, -1):
            self._stages(m, s, l)
        return m

    def _registers(self, m):
        p = self.params
        P, L = p.P, p.L
        s = SimpleNamespace()
        s.dl = m.submodules.desire = DesireLanes(P, weight_bits=p.cfg.weight_bits, count_bits=p.cfg.count_bits,
                                                 target_count=p.cfg.target_count, error_mode=p.cfg.error_mode,
                                                 sum_bits=p.lane_desire_bits)
        maxnb = max(p.blocks(l) for l in range(2, L + 1))
        maxn_in = max(p.sizes[1:-1])
        # written in G_EX, read in H: never in one cycle (COLLISION_ATTR)
        block_list = m.submodules.block_list = Memory(
            shape=data.StructLayout({"b": unsigned(max(ceil_log2(maxnb), 1)), "base": unsigned(p.addr_bits)}),
            depth=max(maxnb, 2), init=[], attrs={COLLISION_ATTR: "1"})
        s.al_r, s.al_w = block_list.read_port(), block_list.write_port()

        s.b = Signal(range(maxnb + 1))             # post block of G
        s.bbase = Signal(p.addr_bits + 1)          # its first weight word
        s.rd_blk = Signal.like(s.b)                # block whose read data arrives
        s.layer = Signal(range(L + 1))             # layer of H (selects its stages)
        s.nact = Signal(range(maxnb + 1))          # blocks in the list
        # nact - 1 kept beside nact (the index of the last list entry), so H's per-entry "last" test
        # is an equality, not a subtraction in front of it (the UP5K's longest path)
        s.nact_last = Signal.like(s.nact)
        s.i = Signal(range(maxn_in + 1))           # input of H
        s.e = Signal(range(maxnb + 1))             # block-list entry of H
        # cycles until H may issue the next block-list entry (DesireLanes takes one per interval)
        s.h_gap = Signal(range(max(s.dl.interval, 2)))
        # control along the stages: 1 = list entry arrives (W read), hw = the W word's second cycle
        # (weight_read_latency 2; the block's state words are read), 2 = words arrive, hp =
        # DesireLanes' delay line (the same latency for every layer): valid, last block of input i,
        # empty list, i, and in hw the entry's block
        s.h1_v, s.h1_last, s.h1_zero, s.h1_i = Signal(), Signal(), Signal(), Signal.like(s.i)
        s.hw_v, s.hw_last, s.hw_zero, s.hw_i, s.hw_b = Signal(), Signal(), Signal(), Signal.like(s.i), Signal.like(s.b)
        s.h2_v, s.h2_last, s.h2_zero, s.h2_i = Signal(), Signal(), Signal(), Signal.like(s.i)
        lat = s.dl.latency
        s.hp_v = [Signal(name=f"hp_v{n}") for n in range(lat)]
        s.hp_last = [Signal(name=f"hp_last{n}") for n in range(lat)]
        s.hp_zero = [Signal(name=f"hp_zero{n}") for n in range(lat)]
        s.hp_i = [Signal.like(s.i, name=f"hp_i{n}") for n in range(lat)]
        for n in range(1, lat):
            m.d.sync += [s.hp_v[n].eq(s.hp_v[n - 1]), s.hp_last[n].eq(s.hp_last[n - 1]),
                         s.hp_zero[n].eq(s.hp_zero[n - 1]), s.hp_i[n].eq(s.hp_i[n - 1])]
        s.dacc = Signal(signed(max(p.desire_bits(l) for l in range(2, L + 1))))   # D_i so far
        s.fin_v, s.fin_sum, s.fin_i = Signal(), Signal.like(s.dacc), Signal.like(s.i)   # D_i complete
        s.care_word, s.want_word = Signal(P), Signal(P)   # care/want of the inputs of a word so far
        m.d.sync += [s.h1_v.eq(0), s.hw_v.eq(0), s.h2_v.eq(0), s.hp_v[0].eq(0), s.fin_v.eq(0)]
        return s

    def _states(self, m, s, l):
        p = self.params
        nin, nbo = p.sizes[l - 1], p.blocks(l)
        with m.State(f"G_RD_{l}"):
            read_block_flags(m, p, self, l, s.b, s.rd_blk)
            m.next = f"G_EX_{l}"
        with m.State(f"G_EX_{l}"):
            g_on = self._read(f"care{l}").data & keep_bits(p, self, l, self.train, s.rd_blk)
            with m.If(g_on != 0):
                m.d.comb += [s.al_w.addr.eq(s.nact), s.al_w.en.eq(1), s.al_w.data.b.eq(s.rd_blk),
                             s.al_w.data.base.eq(s.bbase)]
                m.d.sync += [s.nact.eq(s.nact + 1), s.nact_last.eq(s.nact)]
            m.d.sync += s.bbase.eq(s.bbase + nin)
            with m.If(s.rd_blk == nbo - 1):
                m.d.sync += [s.i.eq(0), s.e.eq(0), s.h_gap.eq(0), s.care_word.eq(0), s.want_word.eq(0),
                             s.dacc.eq(0)]
                m.next = f"H_{l}"
            with m.Else():
                m.d.sync += s.b.eq(s.b + 1)
                m.next = f"G_RD_{l}"
        with m.State(f"H_{l}"):
            m.d.sync += s.layer.eq(l)
            m.d.comb += s.al_r.addr.eq(s.e)
            last_a = (s.e == s.nact_last) | (s.nact == 0)
            with m.If(s.h_gap != 0):
                m.d.sync += s.h_gap.eq(s.h_gap - 1)
            with m.Else():
                m.d.sync += [s.h1_v.eq(1), s.h1_last.eq(last_a), s.h1_zero.eq(s.nact == 0), s.h1_i.eq(s.i),
                             s.h_gap.eq(s.dl.interval - 1)]
                with m.If(last_a):
                    m.d.sync += [s.e.eq(0), s.i.eq(s.i + 1)]
                    with m.If(s.i == nin - 1):
                        m.next = f"H_DRAIN_{l}"
                with m.Else():
                    m.d.sync += s.e.eq(s.e + 1)
        with m.State(f"H_DRAIN_{l}"):
            m.d.sync += s.layer.eq(l)
            # the finishing stage may write in this cycle; everything before it must be empty
            with m.If(~s.h1_v & ~s.hw_v & ~s.h2_v & ~Cat(*s.hp_v).any()):
                m.d.sync += [s.b.eq(0), s.bbase.eq(0), s.nact.eq(0)]
                if l - 1 >= 2:
                    m.next = f"G_RD_{l - 1}"
                else:
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

    def _stages(self, m, s, l):
        p, cfg = self.params, self.params.cfg
        P, lg, nin, dl = p.P, p.lg, p.sizes[l - 1], s.dl
        mine = s.layer == l
        # stage 1: block list entry arrived -> read the W word; the block's desire state is read a
        # cycle later (hw), so that all words arrive together (W's read latency is 2)
        with m.If(s.h1_v & mine):
            entry = s.al_r.data
            m.d.comb += self._read(f"w{l}").addr.eq(entry.base + s.h1_i)
            m.d.sync += [s.hw_v.eq(1), s.hw_last.eq(s.h1_last), s.hw_zero.eq(s.h1_zero), s.hw_i.eq(s.h1_i),
                         s.hw_b.eq(entry.b)]
        with m.If(s.hw_v & mine):
            b = s.hw_b
            m.d.comb += [self._read(f"c{l}").addr.eq(b), self._read(f"care{l}").addr.eq(b),
                         self._read(f"want{l}").addr.eq(b)]
            if p.maskable(l):
                m.d.comb += self._read(f"mask{l}").addr.eq(b)
            m.d.sync += [s.h2_v.eq(1), s.h2_last.eq(s.hw_last), s.h2_zero.eq(s.hw_zero), s.h2_i.eq(s.hw_i),
                         s.rd_blk.eq(b)]
        # stage 2: data arrived -> into the DesireLanes pipeline, control into its delay line
        with m.If(s.h2_v & mine):
            m.d.comb += [dl.start.eq(1), dl.w.eq(self._read(f"w{l}").data), dl.count.eq(self._read(f"c{l}").data),
                         dl.care.eq(self._read(f"care{l}").data), dl.want.eq(self._read(f"want{l}").data),
                         dl.keep.eq(keep_bits(p, self, l, self.train, s.rd_blk))]
            m.d.sync += [s.hp_v[0].eq(1), s.hp_last[0].eq(s.h2_last), s.hp_zero[0].eq(s.h2_zero),
                         s.hp_i[0].eq(s.h2_i)]
        # accumulate stage: P-lane term arrived -> D_i += term; D_i complete on the last block goes
        # to a register, so the wide add and the compares are in different cycles
        with m.If(s.hp_v[-1] & mine):
            if cfg.hidden_satisfied_count:      # input i's count word arrives with its finished D_i
                m.d.comb += self._read(f"c{l - 1}").addr.eq(s.hp_i[-1] >> lg)
            term = Mux(s.hp_zero[-1], 0, dl.term)
            dsum = Signal(signed(p.desire_bits(l)), name=f"dsum{l}")
            m.d.comb += dsum.eq(s.dacc + term)
            with m.If(s.hp_last[-1]):
                m.d.sync += [s.dacc.eq(0), s.fin_v.eq(1), s.fin_sum.eq(dsum), s.fin_i.eq(s.hp_i[-1])]
            with m.Else():
                m.d.sync += s.dacc.eq(dsum)
        # finishing stage: care/want of input fin_i, written per word of P inputs
        with m.If(s.fin_v & mine):
            d_i, d_sum = s.fin_i, s.fin_sum
            # |D| >= K as two compares that run in parallel (no negation in the path)
            c_i = (d_sum >= cfg.k_lin) | (d_sum <= -cfg.k_lin)
            w_i = d_sum > 0
            lane = d_i[:lg] if lg else Const(0, 1)
            if cfg.hidden_satisfied_count:      # golden satisfied_care: wants +1 and spiked S times
                counts = self._read(f"c{l - 1}").data
                satisfied = Cat(*[counts[q] >= cfg.hidden_satisfied_count for q in range(P)]).bit_select(lane, 1)
                c_i = c_i & ~(w_i & satisfied)
            care, want = s.care_word | (c_i << lane)[:P], s.want_word | (w_i << lane)[:P]
            s.emit(DebugKind.DESIRE_HID, l - 1, 0, d_i, value=[d_sum], aux=[Cat(c_i, w_i)])
            with m.If((lane == P - 1) | (d_i == nin - 1)):
                care_write, want_write = getattr(self, f"care{l - 1}_write"), getattr(self, f"want{l - 1}_write")
                m.d.comb += [care_write.addr.eq(d_i >> lg), care_write.data.eq(care), care_write.en.eq(1),
                             want_write.addr.eq(d_i >> lg), want_write.data.eq(want), want_write.en.eq(1)]
                m.d.sync += [s.care_word.eq(0), s.want_word.eq(0)]
            with m.Else():
                m.d.sync += [s.care_word.eq(care), s.want_word.eq(want)]
