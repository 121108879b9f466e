"""The STiDi-BP core's output stage after the forward pass: the decision (§7, ``StidiDecision``) and,
in training, the targets and ternary output error (§8, ``StidiTargets``)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .phase_ports import on_start
from .stidi_params import StidiDebugKind
from .stidi_ports import StidiPhase, block_index, lane_of, pick

__all__ = ["StidiDecision", "StidiTargets"]


def _class_bits(p):
    return unsigned(max(ceil_log2(p.n_classes), 1))


class StidiDecision(StidiPhase):
    """Golden ``decide``, one output neuron per cycle in two passes over ``time<top>``:

    * ``DEC_SCAN``: the output times into ``times``; their min and max, the index-first argmin, whether
      another output ties it, the label's time; ``DEC_SCAN_DRAIN`` waits for the last;
    * ``DEC_PICK``: ``pred`` = the largest U(min(m, T-1)) (``u_out``) among the earliest outputs, ties
      to the lower index; an inference reports the earliest spike(s) only (§7 early exit: ``times``
      T elsewhere); ``DEC_PICK_DRAIN`` waits for the last;
    * ``DEC_DONE``: the DECISION record, with the §8 ``case`` of the summary (training).

    The outputs hold from ``done`` until the next ``start``.
    """

    def __init__(self, params):
        p = params
        T = p.T
        super().__init__(p, reads=[f"time{p.top}", "u_out"], members={
            "label": In(_class_bits(p)), "train": In(1),
            "pred": Out(_class_bits(p)),
            "times": Out(data.ArrayLayout(unsigned(p.time_bits), p.n_classes)),
            "case": Out(range(6)),                 # §8 branch 1..5
            "t_min": Out(range(T + 1)), "t_max": Out(range(T + 1)),
        })

    def elaborate(self, platform):
        p = self.params
        P, T, n_out = p.P, p.T, p.n_classes
        time_r, u_r = self._read(f"time{p.top}"), self.u_out_read
        m = Module()
        emit = self._debug_emitter(m)
        k = Signal(range(n_out))                     # output neuron being read
        u_base = Signal(range(p.stage_blocks(p.top) * T + 1))   # its block's membranes in u_out
        scan_v, pick_v, arriving = Signal(), Signal(), Signal.like(k)
        t_label, first_min = Signal(range(T + 1)), Signal.like(k)
        tied = Signal()                              # more than one output at t_min
        best_u, have_best = Signal(signed(p.membrane_bits)), Signal()   # the largest U among the earliest so far
        m.d.sync += [scan_v.eq(0), pick_v.eq(0)]
        with m.FSM():
            with on_start(m, self):
                m.d.sync += k.eq(0)
                m.next = "DEC_SCAN"
            with m.State("DEC_SCAN"):
                m.d.comb += time_r.addr.eq(k >> p.lg)
                m.d.sync += [scan_v.eq(1), arriving.eq(k), k.eq(k + 1)]
                with m.If(k == n_out - 1):
                    m.next = "DEC_SCAN_DRAIN"
            with m.State("DEC_SCAN_DRAIN"):
                with m.If(~scan_v):
                    m.d.sync += [k.eq(0), u_base.eq(0), have_best.eq(0)]
                    m.next = "DEC_PICK"
            with m.State("DEC_PICK"):
                step = Mux(self.t_min == T, T - 1, self.t_min)
                m.d.comb += [time_r.addr.eq(k >> p.lg), u_r.addr.eq(u_base + step)]
                m.d.sync += [pick_v.eq(1), arriving.eq(k), k.eq(k + 1)]
                with m.If(lane_of(p, k) == P - 1):
                    m.d.sync += u_base.eq(u_base + T)
                with m.If(k == n_out - 1):
                    m.next = "DEC_PICK_DRAIN"
            with m.State("DEC_PICK_DRAIN"):
                with m.If(~pick_v):
                    m.next = "DEC_DONE"
            with m.State("DEC_DONE"):
                emit(StidiDebugKind.DECISION, p.top, 0, 0, value=[self.pred], aux=[self.case])
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        with m.If(scan_v):
            t = pick(p, time_r.data, arriving)
            self._report_time(m, arriving, t)
            with m.If(arriving == self.label):
                m.d.sync += t_label.eq(t)
            with m.If((arriving == 0) | (t < self.t_min)):
                m.d.sync += [self.t_min.eq(t), first_min.eq(arriving), tied.eq(0)]
            with m.Elif(t == self.t_min):
                m.d.sync += tied.eq(1)
            with m.If((arriving == 0) | (t > self.t_max)):
                m.d.sync += self.t_max.eq(t)
        with m.If(pick_v):
            t, u = pick(p, time_r.data, arriving), pick(p, u_r.data, arriving)
            candidate = (self.t_min == T) | (t == self.t_min)
            with m.If(~self.train & ~candidate):
                self._report_time(m, arriving, T)
            with m.If(candidate & (~have_best | (u > best_u))):     # strict: ties keep the lower index
                m.d.sync += [best_u.eq(u), self.pred.eq(arriving), have_best.eq(1)]

        # the §8 case from the scan's summary (pred is the vwin of case 5: the same rule, §7)
        label_first = first_min == self.label
        with m.If(self.t_min == T):
            m.d.comb += self.case.eq(1)
        with m.Elif(label_first & ~tied):
            m.d.comb += self.case.eq(2)
        with m.Elif(label_first):
            m.d.comb += self.case.eq(3)
        with m.Elif((self.t_min == self.t_max) | (t_label == self.t_min)):
            m.d.comb += self.case.eq(4)
        with m.Else():
            m.d.comb += self.case.eq(5)
        return m

    def _report_time(self, m, k, t):
        """Output k's time in the result is ``t``."""
        with m.Switch(k):
            for n in range(self.params.n_classes):
                with m.Case(n):
                    m.d.sync += self.times[n].eq(t)


class StidiTargets(StidiPhase):
    """Golden ``targets`` (§8) from the decision (``case``, ``t_min``, ``t_max``, ``pred``) and the
    ``label``: ``TGT`` reads one output block of ``time<top>`` per cycle, its targets and ternary
    errors d go into ``err`` (level 0; a TARGET record each); ``TGT_DRAIN`` waits for the last.
    ``any_error``: some d is nonzero (else the backward pass is skipped, as the golden model skips it).
    """

    def __init__(self, params):
        p = params
        T = p.T
        super().__init__(p, reads=[f"time{p.top}"], writes=["err"], members={
            "label": In(_class_bits(p)), "pred": In(_class_bits(p)), "case": In(range(6)),
            "t_min": In(range(T + 1)), "t_max": In(range(T + 1)),
            "any_error": Out(1),
        })

    def elaborate(self, platform):
        p, cfg = self.params, self.params.cfg
        P, T, blocks = p.P, p.T, p.stage_blocks(p.top)
        time_r, err_w = self._read(f"time{p.top}"), self.err_write
        m = Module()
        emit = self._debug_emitter(m)
        block = Signal(range(blocks))
        arriving_v, arriving = Signal(), Signal.like(block)
        m.d.sync += arriving_v.eq(0)
        with m.FSM():
            with on_start(m, self):
                m.d.sync += [block.eq(0), self.any_error.eq(0)]
                m.next = "TGT"
            with m.State("TGT"):
                m.d.comb += time_r.addr.eq(block)
                m.d.sync += [arriving_v.eq(1), arriving.eq(block), block.eq(block + 1)]
                with m.If(block == blocks - 1):
                    m.next = "TGT_DRAIN"
            with m.State("TGT_DRAIN"):
                with m.If(~arriving_v):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        with m.If(arriving_v):
            early = Signal(range(T + 1))             # max(m - NEG, 0): the label's target
            late = Signal(range(T + 1))              # min(m + ADD, T) (cases 3, 4) or min(m + ADD, M) (5)
            m.d.comb += early.eq(Mux(self.t_min > cfg.neg, self.t_min - cfg.neg, 0))
            bound = Mux(self.case == 5, self.t_max, T)
            m.d.comb += late.eq(Mux(self.t_min + cfg.add > bound, bound, self.t_min + cfg.add))
            signs, targets = [], []
            for q in range(P):
                k, t = block_index(p, q, arriving), time_r.data[q]
                is_label, is_winner = k == self.label, k == self.pred
                target = Signal(range(T + 1), name=f"target_{q}")
                with m.Switch(self.case):
                    with m.Case(1):
                        m.d.comb += target.eq(Mux(is_label, T - cfg.add, T))
                    with m.Case(3, 4):
                        m.d.comb += target.eq(Mux(is_label, early, Mux(t == self.t_min, late, t)))
                    with m.Case(5):
                        m.d.comb += target.eq(Mux(is_label, early, Mux(is_winner, late, t)))
                    with m.Default():
                        m.d.comb += target.eq(t)
                real = k < p.n_classes
                d = Mux(real & (target > t), 1, Mux(real & (target < t), -1, 0))
                signs.append(d)
                targets.append(target)
                m.d.comb += [err_w.data.sign[q].eq(d), err_w.data.level[q].eq(0)]
            m.d.comb += [err_w.addr.eq(arriving), err_w.en.eq(1)]
            with m.If(Cat(*(d != 0 for d in signs)).any()):
                m.d.sync += self.any_error.eq(1)
            emit(StidiDebugKind.TARGET, p.top, 0, arriving << p.lg, value=targets, aux=signs)
        return m
