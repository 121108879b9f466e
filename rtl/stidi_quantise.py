"""The STiDi-BP core's quantisation of the displacement D that reached a hidden stage (§9.5–9.6)."""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib.wiring import In, Out

from ..golden.stidi_fixed import NORM_GUARD
from .phase_ports import on_start
from .stidi_lanes import ErrorLevelLanes, L2Normaliser, signed_bits
from .stidi_params import StidiDebugKind
from .stidi_ports import StidiPhase, each, enter_stage

__all__ = ["StidiQuantise"]

#: The passes over a stage: the largest leading one, the L2 norm (``error_norm="l2"`` only), the levels.
LARGEST, NORM, LEVELS = 0, 1, 2


class StidiQuantise(StidiPhase):
    """Golden clip rule, error norm and levels of hidden stage m (``stage``, with ``start``):
    ``Q_PASS_m`` reads D of every word of m (``disp``, or ``unpooled`` below a pooling stage) and its
    spike times into ``ErrorLevelLanes``, three times (two for ``error_norm="max"``), each pass
    needing the one before: the largest leading one (DISP records), the norm shift
    (``L2Normaliser``), the signs and levels into ``err`` (LEVEL records). A word's results come
    ``ErrorLevelLanes.latency`` cycles after its read data (``lanes_v``, ``lanes_word``);
    ``Q_PASS_DRAIN_m`` waits for a pass's last word. ``any_sign``: some error is nonzero (else the
    sample is done).
    """

    def __init__(self, params):
        p = params
        self.stages = list(p.quantised_stages)
        sources = sorted({self._source(p, s) for s in self.stages})
        reads = sources + [f"time{s}" for s in self.stages]
        super().__init__(p, reads, writes=["err"], members={"stage": In(range(p.top + 1)), "any_sign": Out(1)})

    @staticmethod
    def _source(p, stage):
        """The memory that holds stage ``stage``'s D: routed through the pooling stage above it (§9.4)."""
        return "unpooled" if p.under_pool(stage) else "disp"

    def elaborate(self, platform):
        p = self.params
        P = p.P
        m = Module()
        emit = self._debug_emitter(m)
        # offsets of D words lie in [-disp_bits, 0]; the normaliser also needs -G representable
        offset_bits = max(signed_bits(p.disp_bits), signed_bits(NORM_GUARD))
        norm = m.submodules.l2 = L2Normaliser(lanes=P, words=max(p.stage_sizes[s] for s in self.stages),
                                              offset_bits=offset_bits, guard=NORM_GUARD)
        lv = m.submodules.levels = ErrorLevelLanes(lanes=P, d_bits=p.disp_bits, levels=p.cfg.levels,
                                                   max_norm_shift=norm.max_shift, time_steps=p.T)
        word = Signal(range(max(p.stage_blocks(s) for s in self.stages)))
        arriving_v, arriving = Signal(), Signal.like(word)
        stage = Signal(range(p.top + 1))
        passes = (LARGEST, NORM, LEVELS) if p.cfg.error_norm == "l2" else (LARGEST, LEVELS)
        pass_ = Signal(2)
        top_length = Signal(range(p.disp_bits + 1))
        norm_shift = Signal(range(norm.max_shift + 1))
        m.d.sync += arriving_v.eq(0)
        # the word whose ErrorLevelLanes outputs are out: the read data's, lv.latency cycles later
        lanes_v, lanes_word, in_flight = arriving_v, arriving, [arriving_v]
        for n in range(lv.latency):
            v, w = Signal(name=f"lanes_v{n}"), Signal.like(word, name=f"lanes_word{n}")
            m.d.sync += [v.eq(lanes_v), w.eq(lanes_word)]
            lanes_v, lanes_word = v, w
            in_flight.append(v)
        with m.FSM():
            with on_start(m, self):
                m.d.sync += [word.eq(0), pass_.eq(LARGEST), top_length.eq(0), stage.eq(self.stage)]
                enter_stage(m, self.stage, {s: f"Q_PASS_{s}" for s in self.stages})
            for s in self.stages:
                with m.State(f"Q_PASS_{s}"):
                    m.d.comb += [self._read(self._source(p, s)).addr.eq(word), self._read(f"time{s}").addr.eq(word)]
                    m.d.sync += [arriving_v.eq(1), arriving.eq(word), word.eq(word + 1)]
                    with m.If(word == p.stage_blocks(s) - 1):
                        m.next = f"Q_PASS_DRAIN_{s}"
                with m.State(f"Q_PASS_DRAIN_{s}"):
                    # L2Normaliser's shift is out the cycle after its last words: this one
                    with m.If(~Cat(*in_flight).any()):
                        m.d.sync += word.eq(0)
                        with m.Switch(pass_):
                            with m.Case(LARGEST):
                                m.d.sync += [pass_.eq(passes[1]), norm_shift.eq(0), self.any_sign.eq(0)]
                                m.next = f"Q_PASS_{s}"
                            with m.Case(NORM):
                                m.d.sync += [pass_.eq(LEVELS), norm_shift.eq(norm.shift)]
                                m.next = f"Q_PASS_{s}"
                            with m.Default():
                                m.d.comb += self.done.eq(1)
                                m.next = "IDLE"

        d = Signal(p.lanes(signed(p.disp_bits)))     # the stage's D word
        for s in self.stages:
            with m.If(arriving_v & (stage == s)):
                m.d.comb += each(p, d, self._read(self._source(p, s)).data) + each(p, lv.time, self._read(f"time{s}").data)
        m.d.comb += each(p, lv.d, d)
        m.d.comb += [lv.top_length.eq(top_length), lv.norm_shift.eq(norm_shift),
                     norm.counted.eq(lv.counted), norm.first.eq(lanes_word == 0)]
        m.d.comb += each(p, norm.offset, lv.offset)       # the normaliser's port may be wider
        with m.If(arriving_v & (pass_ == LARGEST)):
            emit(StidiDebugKind.DISP, stage, 0, arriving << p.lg, value=[d[q] for q in range(P)])
        with m.If(lanes_v):
            with m.Switch(pass_):
                with m.Case(LARGEST):
                    with m.If(lv.length_max > top_length):
                        m.d.sync += top_length.eq(lv.length_max)
                with m.Case(LEVELS):
                    err_w = self.err_write
                    m.d.comb += [err_w.addr.eq(lanes_word), err_w.en.eq(1)]
                    m.d.comb += each(p, err_w.data.sign, lv.sign) + each(p, err_w.data.level, lv.level)
                    with m.If(Cat(*(lv.sign[q] != 0 for q in range(P))).any()):
                        m.d.sync += self.any_sign.eq(1)
                    emit(StidiDebugKind.LEVEL, stage, 0, lanes_word << p.lg,
                         value=[lv.sign[q] for q in range(P)], aux=[lv.level[q] for q in range(P)])
        return m
