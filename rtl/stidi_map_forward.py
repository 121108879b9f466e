"""The STiDi-BP core's forward pass through the conv and pooling stages of a conv topology (§5, §6):
a conv stage's P lanes are P output channels at one position (``StidiCoreParams.channel_lanes``)."""

from amaranth.hdl import Const, Mux, Signal

from .stidi_conv import ConvTap, PoolScan, StepCurrents
from .stidi_lanes import IntegrateLanes, MinPool
from .stidi_params import StidiDebugKind
from .stidi_ports import StagePass, advance_position, lane_of, pick

__all__ = ["StidiMapForward"]


class StidiMapForward(StagePass):
    """Every map stage s (conv or pooling, the stages below the first fc one), in order:

    * ``FW_CONV_*_s`` (golden ``conv_currents`` + ``integrate``), per word of P output channels
      (c_b*P .. c_b*P + P-1, y, x), channel block c_b outermost: ``FW_CONV_TAP_s`` reads the Cin*k*k
      window taps' spike times (``ConvTap``: padding is outside the map; one pre time for all P
      channels) and the taps' P sign bits, adding +-1 into the P lanes of ``StepCurrents`` at the
      tap's step (spikes before T-1 only); ``FW_CONV_STEP_s`` drains C[0..T-1] into
      ``IntegrateLanes`` (one step per cycle, STEP records), and the word's times go into ``time<s>``
      (padding lanes past the channels: T, silent): K + T + 3 cycles per word;
    * ``FW_POOL_s`` (golden ``min_pool``): ``PoolScan`` walks the windows, one tap of one channel per
      cycle, into ``MinPool``; each window's time and argmin go into ``time<s>`` (a pooling stage's
      words hold P consecutive neurons) and ``argmin<s>`` (POOL records).
    """

    def __init__(self, params):
        p = params
        self.stages = []
        for s in range(1, p.top + 1):
            if p.kind(s) == "fc":
                break
            self.stages.append(s)
        self.convs = [s for s in self.stages if p.kind(s) == "conv"]
        self.pools = [s for s in self.stages if p.kind(s) == "pool"]
        reads = [f"time{s - 1}" for s in self.stages] + [f"s{p.weight_layer[s]}" for s in self.convs]
        writes = [f"time{s}" for s in self.stages] + [f"argmin{s}" for s in self.pools]
        super().__init__(p, reads, writes)

    def _stage_states(self, m, s):
        (self._conv_states if s in self.convs else self._pool_states)(m, s)

    def _data_stages(self, m):
        for s in self.convs:
            self._conv_stage(m, s)
        for s in self.pools:
            self._pool_stage(m, s)

    def _parts(self, m):
        p = self.params
        T = p.T
        self.tap, self.scan, self.min_pool = {}, {}, {}
        for s in self.convs:
            cin, h, w = p.stages[s - 1].shape
            self.tap[s] = m.submodules[f"conv_tap{s}"] = ConvTap(channels=cin, height=h, width=w, kernel=p.stages[s].k)
        for s in self.pools:
            c, h, w = p.stages[s - 1].shape
            k = p.stages[s].k
            self.scan[s] = m.submodules[f"pool_scan{s}"] = PoolScan(lanes=p.P, channels=c, height=h, width=w, kernel=k)
            self.min_pool[s] = m.submodules[f"min_pool{s}"] = MinPool(lanes=1, kernel=k, time_steps=T)
        self.currents = m.submodules.step_currents = StepCurrents(lanes=p.P, fan_in=max(p.fan_in(s) for s in self.convs),
                                                                 time_steps=T)
        self.integ = m.submodules.integrate = IntegrateLanes(lanes=p.P, fan_in=p.max_fan_in + 1, time_steps=T)
        maps = [p.stages[s - 1].shape for s in self.convs]
        self.layer = Signal(range(p.top + 1))       # the stage of the pass
        # conv: the word (c_b, y, x) and tap being read; the data stages' valid bits
        self.tap_index = Signal(range(max(p.fan_in(s) for s in self.convs)))
        self.y = Signal(range(max(h for _, h, _ in maps)))
        self.x = Signal(range(max(w for _, _, w in maps)))
        self.pos = Signal(range(max(h * w for _, h, w in maps)))
        self.neuron = Signal(range(max(p.stage_blocks(s) for s in self.convs)))   # the word c_b*H*W + y*W + x
        self.sign_base = Signal(p.addr_bits + 1)     # c_b * K: the sign words of channel block c_b
        self.step = Signal(range(T))
        self.tap_v, self.tap_inside = Signal(), Signal()           # a tap's time and sign arrive
        self.tap_lane = Signal(range(p.P))                         # the tap's lane of its time word
        self.step_v, self.step_t = Signal(), Signal(range(T))     # C[t] arrives: integrate step t
        self.times_v, self.times_t = Signal(), Signal(p.lanes(range(T + 1)))   # the word's TIMES record
        self.times_neuron = Signal.like(self.neuron)
        self.cur_i = Signal(self.integ.i.shape())
        self.cur_u = Signal(self.integ.u.shape())
        self.cur_t = Signal(self.integ.t_fire.shape())
        # pooling: a tap's time arrives; a window's result is out
        pooled = range(max([p.stage_sizes[s] for s in self.pools], default=2))
        self.pool_v, self.pool_first, self.pool_last, self.pool_pooled = Signal(), Signal(), Signal(), Signal(pooled)
        self.pool_lane = Signal(range(p.P))                       # the tap's lane (channel) of its conv word
        self.window_v, self.window_pooled = Signal(), Signal(pooled)
        m.d.sync += [self.tap_v.eq(0), self.step_v.eq(0), self.times_v.eq(0), self.pool_v.eq(0)]

    def _enter(self, m, s):
        """Go to the pass of map stage ``s``, or raise ``done`` after the last."""
        p = self.params
        if s not in self.stages:
            m.d.comb += self.done.eq(1)
            m.next = "IDLE"
            return
        m.d.sync += self.layer.eq(s)
        if p.kind(s) == "conv":
            m.d.sync += [self.tap_index.eq(0), self.y.eq(0), self.x.eq(0), self.pos.eq(0), self.neuron.eq(0),
                         self.sign_base.eq(0)]
            m.next = f"FW_CONV_TAP_{s}"
        else:
            m.d.comb += self.scan[s].start.eq(1)
            m.next = f"FW_POOL_{s}"

    def _conv_states(self, m, s):
        p = self.params
        T, K = p.T, p.fan_in(s)
        _, h, w = p.stages[s - 1].shape
        tap = self.tap[s]
        with m.State(f"FW_CONV_TAP_{s}"):
            # read tap q's pre time and the signs of W[c_b*P .. c_b*P + P-1, q]; the data stage adds them into C[t]
            m.d.comb += [tap.tap.eq(self.tap_index), tap.y.eq(self.y), tap.x.eq(self.x), tap.pos.eq(self.pos)]
            m.d.comb += [self._read(f"time{s - 1}").addr.eq(tap.pre >> p.lg),
                         self._read(f"s{p.weight_layer[s]}").addr.eq(self.sign_base + self.tap_index)]
            m.d.sync += [self.tap_v.eq(1), self.tap_inside.eq(tap.inside), self.tap_lane.eq(lane_of(p, tap.pre)),
                         self.tap_index.eq(self.tap_index + 1)]
            with m.If(self.tap_index == K - 1):
                m.next = f"FW_CONV_GAP_{s}"
        with m.State(f"FW_CONV_GAP_{s}"):
            # the last tap's add is in flight; the neurons start at I = U = 0, silent
            m.d.sync += [self.cur_i.eq(0), self.cur_u.eq(0), self.step.eq(0)]
            m.d.sync += [self.cur_t[q].eq(T) for q in range(p.P)]
            m.next = f"FW_CONV_STEP_{s}"
        with m.State(f"FW_CONV_STEP_{s}"):
            m.d.comb += [self.currents.drain.eq(1), self.currents.drain_t.eq(self.step)]
            m.d.sync += [self.step_v.eq(1), self.step_t.eq(self.step), self.step.eq(self.step + 1)]
            with m.If(self.step == T - 1):
                m.next = f"FW_CONV_NEXT_{s}"
        with m.State(f"FW_CONV_NEXT_{s}"):
            # the last step integrates in this cycle; then the next word (c_b advances after H*W)
            m.d.sync += [self.tap_index.eq(0), self.neuron.eq(self.neuron + 1)]
            with m.If(advance_position(m, self.y, self.x, self.pos, h, w)):
                m.d.sync += self.sign_base.eq(self.sign_base + K)
            with m.If(self.neuron == p.stage_blocks(s) - 1):
                m.next = f"FW_CONV_END_{s}"
            with m.Else():
                m.next = f"FW_CONV_TAP_{s}"
        with m.State(f"FW_CONV_END_{s}"):
            self._enter(m, s + 1)                  # the last time was written in the cycle before

    def _pool_states(self, m, s):
        scan = self.scan[s]
        with m.State(f"FW_POOL_{s}"):
            m.d.comb += [scan.advance.eq(1), self._read(f"time{s - 1}").addr.eq(scan.pre)]
            m.d.sync += [self.pool_v.eq(1), self.pool_first.eq(scan.first), self.pool_last.eq(scan.last),
                         self.pool_pooled.eq(scan.pooled), self.pool_lane.eq(scan.lane)]
            with m.If(scan.done):
                m.next = f"FW_POOL_END_{s}"
        with m.State(f"FW_POOL_END_{s}"):
            with m.If(~self.pool_v & ~self.window_v):
                self._enter(m, s + 1)

    def _live(self, s):
        """The lanes of word ``self.neuron`` of conv stage ``s`` that hold a channel: all but the last
        channel block's lanes past the channels."""
        p = self.params
        c, h, w = p.stages[s].shape
        tail = c - (-(-c // p.P) - 1) * p.P
        if tail == p.P:
            return Const((1 << p.P) - 1, p.P)
        return Mux(self.neuron >= p.stage_blocks(s) - h * w, (1 << tail) - 1, (1 << p.P) - 1)

    def _conv_stage(self, m, s):
        """A tap's time and P signs -> C_q[t] +-= 1 (only spikes before T-1 count, §5); C[t] -> one
        integrate-and-fire step of P channels; after step T-1 the spike times are stored (a TIMES
        record next cycle; padding lanes silent)."""
        p = self.params
        T = p.T
        with m.If(self.tap_v & (self.layer == s)):
            t = pick(p, self._read(f"time{s - 1}").data, self.tap_lane)
            with m.If(self.tap_inside & (t < T - 1)):
                m.d.comb += [self.currents.add.eq(1), self.currents.add_t.eq(t),
                             self.currents.add_negative.eq(self._read(f"s{p.weight_layer[s]}").data)]
        with m.If(self.step_v & (self.layer == s)):
            integ = self.integ
            m.d.comb += [integ.i.eq(self.cur_i), integ.u.eq(self.cur_u), integ.t_fire.eq(self.cur_t),
                         integ.t.eq(self.step_t), integ.threshold.eq(p.threshold(s))]
            m.d.comb += [integ.delta[q].eq(self.currents.current[q]) for q in range(p.P)]
            m.d.sync += [self.cur_i.eq(integ.i_next), self.cur_u.eq(integ.u_next), self.cur_t.eq(integ.t_fire_next)]
            self.emit(StidiDebugKind.STEP, s, self.step_t, self.neuron << p.lg,
                      value=[integ.u_next[q] for q in range(p.P)], aux=[integ.i_next[q] for q in range(p.P)])
            with m.If(self.step_t == T - 1):
                time_w, live = self._write(f"time{s}"), self._live(s)
                m.d.comb += [time_w.addr.eq(self.neuron), time_w.en.eq((1 << p.P) - 1)]
                for q in range(p.P):
                    t_q = Mux(live[q], integ.t_fire_next[q], T)
                    m.d.comb += time_w.data[q].eq(t_q)
                    m.d.sync += self.times_t[q].eq(t_q)
                m.d.sync += [self.times_v.eq(1), self.times_neuron.eq(self.neuron)]
        with m.If(self.times_v & (self.layer == s)):
            self.emit(StidiDebugKind.TIMES, s, 0, self.times_neuron << p.lg, value=[self.times_t[q] for q in range(p.P)])

    def _pool_stage(self, m, s):
        """Taps (their channel's lane of a conv word) -> ``MinPool`` -> ``time<s>`` (the pooled neuron's lane
        of its word), ``argmin<s>`` (POOL records)."""
        p = self.params
        pool = self.min_pool[s]
        with m.If(self.pool_v & (self.layer == s)):
            m.d.comb += [pool.time[0].eq(pick(p, self._read(f"time{s - 1}").data, self.pool_lane)),
                         pool.first.eq(self.pool_first)]
        m.d.sync += [self.window_v.eq(self.pool_v & self.pool_last), self.window_pooled.eq(self.pool_pooled)]
        with m.If(self.window_v & (self.layer == s)):
            time_w, arg_w = self._write(f"time{s}"), self._write(f"argmin{s}")
            m.d.comb += [time_w.addr.eq(self.window_pooled >> p.lg), time_w.en.eq(1 << lane_of(p, self.window_pooled)),
                         arg_w.addr.eq(self.window_pooled), arg_w.en.eq(1), arg_w.data.eq(pool.argmin[0])]
            m.d.comb += [time_w.data[q].eq(pool.min_time[0]) for q in range(p.P)]
            self.emit(StidiDebugKind.POOL, s, 0, self.window_pooled, value=[pool.min_time[0]], aux=[pool.argmin[0]])
