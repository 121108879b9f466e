"""The desire-BP core's output layer after the forward pass: the prediction (``DesireResult``) and,
in training, the output desire (``DesireOutputDesire``)."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .desire_ports import DebugKind, debug_emitter, phase_members, start_state, valid_lanes

__all__ = ["DesireResult", "DesireOutputDesire"]


class DesireResult(wiring.Component):
    """Golden ``classify``: ``counts`` of the output layer, ``pred`` = the first index of the
    largest count, ``tie`` = another output has it too; one output per two cycles (``RD``, ``EX``).
    The outputs hold from ``done`` until the next ``start``."""

    def __init__(self, params):
        self.params = p = params
        n = p.sizes[-1]
        super().__init__({
            **phase_members(p, reads=[f"c{p.L}"]),
            "counts": Out(data.ArrayLayout(unsigned(p.cfg.count_bits), n)),
            "pred": Out(unsigned(max(ceil_log2(n), 1))),
            "tie": Out(1),
        })

    def elaborate(self, platform):
        p = self.params
        lg, n = p.lg, p.sizes[-1]
        c_read = getattr(self, f"c{p.L}_read")
        m = Module()
        j = Signal(range(n + 1))        # output neuron
        best = Signal(p.cfg.count_bits)
        with m.FSM():
            start_state(m)
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += j.eq(0)
                    m.next = "RD"
            with m.State("RD"):
                m.d.comb += c_read.addr.eq(j >> lg)
                m.next = "EX"
            with m.State("EX"):
                # a mux over lanes: indexing the View by a Value would multiply the index by the lane width
                count = Array(c_read.data[q] for q in range(p.P))[j[:lg]] if lg else c_read.data[0]
                m.d.sync += Array(self.counts[q] for q in range(n))[j].eq(count)
                with m.If((j == 0) | (count > best)):
                    m.d.sync += [best.eq(count), self.pred.eq(j), self.tie.eq(0)]
                with m.Elif(count == best):
                    m.d.sync += self.tie.eq(1)
                with m.If(j == n - 1):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += j.eq(j + 1)
                    m.next = "RD"
        return m


class DesireOutputDesire(wiring.Component):
    """Golden ``output_desire``: care/want of every output neuron from its count and the
    ``label``, a word of P neurons per two cycles (``RD``, ``EX``; a DESIRE_OUT record each)."""

    def __init__(self, params):
        self.params = p = params
        L = p.L
        super().__init__({
            **phase_members(p, reads=[f"c{L}"], writes=[f"care{L}", f"want{L}"]),
            "label": In(p.label_layout.members["label"]),
        })

    def elaborate(self, platform):
        p, cfg = self.params, self.params.cfg
        P, lg, L = p.P, p.lg, p.L
        c_read = getattr(self, f"c{L}_read")
        care_write, want_write = getattr(self, f"care{L}_write"), getattr(self, f"want{L}_write")
        m = Module()
        emit = debug_emitter(m, self)
        b = Signal(range(p.blocks(L) + 1))     # output block
        rd_blk = Signal.like(b)                # block whose counts arrive
        with m.FSM():
            start_state(m)
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += b.eq(0)
                    m.next = "RD"
            with m.State("RD"):
                m.d.comb += c_read.addr.eq(b)
                m.d.sync += rd_blk.eq(b)
                m.next = "EX"
            with m.State("EX"):
                care_bits, want_bits = [], []
                for q in range(P):
                    j = Cat(Const(q, lg), rd_blk) if lg else rd_blk
                    c = c_read.data[q]
                    want = j == self.label
                    care_bits.append(Mux(want, c < cfg.target_count - cfg.k_out, c > cfg.k_out))
                    want_bits.append(want)
                lanes = valid_lanes(p, L, rd_blk)
                care, want = Cat(*care_bits) & lanes, Cat(*want_bits) & lanes
                m.d.comb += [care_write.addr.eq(rd_blk), care_write.data.eq(care), care_write.en.eq(1),
                             want_write.addr.eq(rd_blk), want_write.data.eq(want), want_write.en.eq(1)]
                emit(DebugKind.DESIRE_OUT, L, 0, rd_blk << lg, aux=[Cat(care[q], want[q]) for q in range(P)])
                with m.If(rd_blk == p.blocks(L) - 1):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += b.eq(b + 1)
                    m.next = "RD"
        return m
