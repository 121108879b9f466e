"""The STiDi-BP core's backward pass through the map stages of a conv topology: the conv update
(§9.1–9.3, ``StidiConvUpdate``; P lanes = P output channels) and the routing of D through a pooling
stage (§9.4, ``StidiUnpool``)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib.wiring import In

from .phase_ports import on_start
from .stidi_conv import ConvTap, ConvUpdateLanes, PoolScan, ScatterAdd
from .stidi_lanes import DisplacementLanes
from .stidi_params import StidiDebugKind
from .stidi_ports import StidiPhase, advance_position, enter_stage, lane_of, pick
from .stidi_update import clamped_lr_shift, lr_shift_member

__all__ = ["StidiConvUpdate", "StidiUnpool"]


class StidiConvUpdate(StidiPhase):
    """Golden ``conv_backward`` of conv stage s (``stage``, with ``start``), per weight word (c_b, tap):
    the P weights W[c_b*P + q, tap] of a channel block, which share the tap's pre at every position.

    * ``CONV_W_s`` / ``CONV_W_HOLD_s``: read the word;
    * ``CONV_A_s``: pass A over the H*W positions (``ConvTap``: the tap's pre, one time for the P
      lanes; padding and dropped pres never fired; the posts are the word c_b*H*W + pos of ``time<s>``
      and ``err``) sums the steps in the P lanes of ``ConvUpdateLanes``; ``CONV_A_WAIT_s`` writes
      ``sat(W - A)`` into ``w<l>`` and the signs into ``s<l>``;
    * ``CONV_B_s`` (stage below is not the input): pass B sends the sum over the P lanes of
      s*(W_new << lvl) of every position through ``DisplacementLanes`` into ``ScatterAdd``,
      D[pre] += term (the pre's lane of ``disp``, whose read port is transparent); ``CONV_B_WAIT_s``
      waits for the last: about 2*H*W + 12 cycles per word.

    Padding lanes past the channels have error 0 (``StidiQuantise`` of a D that ``StidiUnpool`` never
    wrote): their weights stay, their terms are 0.
    """

    def __init__(self, params):
        p = params
        self.stages = [s for s in p.weight_stages if p.kind(s) == "conv"]
        layers = [p.weight_layer[s] for s in self.stages]
        self.sends_down = any(s >= 2 for s in self.stages)
        reads = [f"time{x}" for x in sorted({x for s in self.stages for x in (s - 1, s)})] + ["err"]
        reads += [f"w{l}" for l in layers] + (["keep"] if p.dropout and self.sends_down else [])
        reads += ["disp"] if self.sends_down else []
        writes = [f"w{l}" for l in layers] + [f"s{l}" for l in layers] + (["disp"] if self.sends_down else [])
        super().__init__(p, reads, writes, members={"stage": In(range(p.top + 1)), "lr_shift": lr_shift_member(p)})

    def elaborate(self, platform):
        p = self.params
        m = Module()
        self._parts(m)
        with m.FSM():
            with on_start(m, self):
                m.d.sync += [self.layer.eq(self.stage), self.co.eq(0), self.tap_index.eq(0), self.addr.eq(0),
                             self.post_base.eq(0)]
                enter_stage(m, self.stage, {s: f"CONV_W_{s}" for s in self.stages})
            for s in self.stages:
                self._states(m, s)
        for s in self.stages:
            self._update_stage(m, s)
        if self.sends_down:
            self._scatter_stage(m)
        return m

    def _parts(self, m):
        p, cfg = self.params, self.params.cfg
        self.tap, self.upd = {}, {}
        for s in self.stages:
            cin, h, w = p.stages[s - 1].shape
            self.tap[s] = m.submodules[f"conv_tap{s}"] = ConvTap(channels=cin, height=h, width=w, kernel=p.stages[s].k)
            self.upd[s] = m.submodules[f"conv_update{s}"] = ConvUpdateLanes(
                lanes=p.P, positions=h * w, weight_bits=cfg.weight_bits, levels=cfg.levels,
                max_lr_shift=p.max_lr_shift, time_steps=p.T)
        latency = 0
        if self.sends_down:
            self.dsp = m.submodules.displace = DisplacementLanes(lanes=p.P, weight_bits=cfg.weight_bits,
                                                                 levels=cfg.levels, time_steps=p.T)
            self.scatter = m.submodules.scatter = ScatterAdd(depth=max(p.hidden_blocks, 2), d_bits=p.disp_bits,
                                                             term_bits=self.dsp.term_bits)
            latency = self.dsp.latency
        maps = [p.stages[s - 1].shape for s in self.stages]
        self.layer = Signal(range(p.top + 1))       # the stage being updated
        # the weight word (c_b, tap) being updated, the position, the passes' data stages
        self.co = Signal(range(max(-(-p.stages[s].shape[0] // p.P) for s in self.stages)))   # c_b
        self.tap_index = Signal(range(max(p.fan_in(s) for s in self.stages)))
        self.addr = Signal(p.addr_bits + 1)         # c_b * K + tap
        self.y = Signal(range(max(h for _, h, _ in maps)))
        self.x = Signal(range(max(w for _, _, w in maps)))
        self.pos = Signal(range(max(h * w for _, h, w in maps)))
        self.post_base = Signal(range(max(p.stage_blocks(s) for s in self.stages) + 1))   # c_b * H * W
        self.w = Signal(p.lanes(signed(cfg.weight_bits)))       # the weights before the update
        self.w_new = Signal(p.lanes(signed(cfg.weight_bits)))   # after it (pass B)
        self.wait = Signal(range(16))
        self.a_v, self.b_v, self.first, self.inside = Signal(), Signal(), Signal(), Signal()
        self.pre = Signal(range(max(p.stage_sizes[s - 1] for s in self.stages)))
        self.db_v = [Signal(name=f"db_v{n}") for n in range(latency)]
        self.db_pre = [Signal.like(self.pre, name=f"db_pre{n}") for n in range(latency)]
        self.scatter_lane = Signal(range(p.P))      # the lane of the word ScatterAdd reads this cycle
        m.d.sync += [self.a_v.eq(0), self.b_v.eq(0)]

    def _position_pass(self, m, s, name, valid, after):
        """One pass over the H*W positions of weight (co, tap): read the tap's pre time, the post's
        time and error; the data stages use them one cycle later."""
        p = self.params
        _, h, w = p.stages[s - 1].shape
        tap = self.tap[s]
        with m.State(f"{name}_{s}"):
            post = self.post_base + self.pos
            m.d.comb += [tap.tap.eq(self.tap_index), tap.y.eq(self.y), tap.x.eq(self.x), tap.pos.eq(self.pos)]
            m.d.comb += [self._read(f"time{s - 1}").addr.eq(tap.pre >> p.lg), self._read(f"time{s}").addr.eq(post),
                         self.err_read.addr.eq(post)]
            if p.dropout and s >= 2:
                m.d.comb += self.keep_read.addr.eq(tap.pre >> p.lg)        # the pre's dropout bit (§10.3)
            m.d.sync += [valid.eq(1), self.first.eq(self.pos == 0), self.inside.eq(tap.inside), self.pre.eq(tap.pre)]
            with m.If(advance_position(m, self.y, self.x, self.pos, h, w)):
                m.d.sync += self.wait.eq(0)
                m.next = f"{after}_{s}"

    def _states(self, m, s):
        p = self.params
        K, channel_blocks = p.fan_in(s), -(-p.stages[s].shape[0] // p.P)
        _, h, w = p.stages[s - 1].shape
        layer = p.weight_layer[s]
        w_read, w_write, sign_w = self._read(f"w{layer}"), self._write(f"w{layer}"), self._write(f"s{layer}")
        with m.State(f"CONV_W_{s}"):
            m.d.comb += w_read.addr.eq(self.addr)
            m.next = f"CONV_W_HOLD_{s}"
        with m.State(f"CONV_W_HOLD_{s}"):
            m.d.sync += [self.w[q].eq(w_read.data[q]) for q in range(p.P)]
            m.next = f"CONV_A_{s}"
        self._position_pass(m, s, "CONV_A", self.a_v, "CONV_A_WAIT")
        with m.State(f"CONV_A_WAIT_{s}"):
            # A is complete ConvUpdateLanes.latency cycles after the data stage of the last position
            m.d.sync += self.wait.eq(self.wait + 1)
            with m.If(self.wait == ConvUpdateLanes.latency):
                new = self.upd[s].w_next
                m.d.comb += [w_write.addr.eq(self.addr), w_write.en.eq(1),
                             sign_w.addr.eq(self.addr), sign_w.data.eq(Cat(*(new[q][-1] for q in range(p.P)))),
                             sign_w.en.eq(1)]
                m.d.comb += [w_write.data[q].eq(new[q]) for q in range(p.P)]
                m.d.sync += [self.w_new[q].eq(new[q]) for q in range(p.P)]
                m.next = f"CONV_B_{s}" if s >= 2 else f"CONV_NEXT_W_{s}"
        if s >= 2:
            self._position_pass(m, s, "CONV_B", self.b_v, "CONV_B_WAIT")
            with m.State(f"CONV_B_WAIT_{s}"):
                # the last term leaves DisplacementLanes, then ScatterAdd writes it
                m.d.sync += self.wait.eq(self.wait + 1)
                with m.If(self.wait == len(self.db_v) + ScatterAdd.latency + 1):
                    m.next = f"CONV_NEXT_W_{s}"
        with m.State(f"CONV_NEXT_W_{s}"):
            m.d.sync += [self.addr.eq(self.addr + 1), self.tap_index.eq(self.tap_index + 1)]
            with m.If(self.tap_index == K - 1):
                m.d.sync += [self.tap_index.eq(0), self.co.eq(self.co + 1), self.post_base.eq(self.post_base + h * w)]
                with m.If(self.co == channel_blocks - 1):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = f"CONV_W_{s}"
            with m.Else():
                m.next = f"CONV_W_{s}"

    def _update_stage(self, m, s):
        """A position's times and errors -> ``ConvUpdateLanes`` (pass A) or ``DisplacementLanes`` (pass B):
        the pre's time (its lane of its word) for every lane; a pre outside the map (padding) or
        dropped (§10.3) never fired."""
        p = self.params
        present = self.inside & (pick(p, self.keep_read.data, self.pre) if p.dropout and s >= 2 else 1)
        t_pre = Mux(present, pick(p, self._read(f"time{s - 1}").data, self.pre), p.T)
        t_post, err = self._read(f"time{s}").data, self.err_read.data
        upd = self.upd[s]
        m.d.comb += [upd.w[q].eq(self.w[q]) for q in range(p.P)]
        with m.If(self.a_v & (self.layer == s)):
            m.d.comb += [upd.valid.eq(1), upd.first.eq(self.first), upd.keep.eq((1 << p.P) - 1),
                         upd.lr_shift.eq(clamped_lr_shift(p, self.lr_shift, s))]
            m.d.comb += [x for q in range(p.P) for x in (
                upd.t_pre[q].eq(t_pre), upd.t_post[q].eq(t_post[q]), upd.sign[q].eq(err.sign[q]),
                upd.level[q].eq(err.level[q]))]
        if s >= 2:
            dsp = self.dsp
            with m.If(self.b_v & (self.layer == s)):
                m.d.comb += [dsp.t_pre.eq(t_pre), dsp.keep.eq(1)]
                m.d.comb += [x for q in range(p.P) for x in (
                    dsp.w[q].eq(self.w_new[q]), dsp.t_post[q].eq(t_post[q]), dsp.sign[q].eq(err.sign[q]),
                    dsp.level[q].eq(err.level[q]))]

    def _scatter_stage(self, m):
        """Pass B's terms leave ``DisplacementLanes`` ``latency`` cycles after their data stage and go into
        ``ScatterAdd``, which adds them into the pre's lane of its ``disp`` word (the read port is
        transparent, also for the other lanes of a word just written)."""
        p = self.params
        sc = self.scatter
        m.d.sync += [self.db_v[0].eq(self.b_v), self.db_pre[0].eq(self.pre)]
        for n in range(1, len(self.db_v)):
            m.d.sync += [self.db_v[n].eq(self.db_v[n - 1]), self.db_pre[n].eq(self.db_pre[n - 1])]
        m.d.sync += self.scatter_lane.eq(lane_of(p, self.db_pre[-1]))
        m.d.comb += [sc.valid.eq(self.db_v[-1]), sc.addr.eq(self.db_pre[-1] >> p.lg), sc.term.eq(self.dsp.term),
                     sc.read.data.eq(pick(p, self.disp_read.data, self.scatter_lane))]
        with m.If(self.db_v[-1]):
            m.d.comb += self.disp_read.addr.eq(sc.read.addr)
        with m.If(sc.write.en):
            m.d.comb += [self.disp_write.addr.eq(sc.write.addr), self.disp_write.en.eq(1 << self.scatter_lane)]
            m.d.comb += [self.disp_write.data[q].eq(sc.write.data) for q in range(p.P)]


class StidiUnpool(StidiPhase):
    """Golden ``unpool`` of pooling stage p (``stage``, with ``start``): ``UNPOOL_p`` walks its windows
    (``PoolScan``, one tap of one channel per cycle); D of the window (its lane of ``disp``) goes to
    its argmin neuron of the conv stage below, 0 to the others (its channel's lane of ``unpooled``; a
    DISP record of the pooling stage per window); ``UNPOOL_END_p`` waits for the last."""

    def __init__(self, params):
        p = params
        self.pools = [s for s in range(1, p.top + 1) if p.kind(s) == "pool" and p.under_pool(s - 1)
                      and s - 1 in p.quantised_stages]
        super().__init__(p, reads=["disp"] + [f"argmin{s}" for s in self.pools], writes=["unpooled"],
                         members={"stage": In(range(p.top + 1))})

    def elaborate(self, platform):
        p = self.params
        m = Module()
        emit = self._debug_emitter(m)
        scans = {}
        for s in self.pools:
            c, h, w = p.stages[s - 1].shape
            scans[s] = m.submodules[f"pool_scan{s}"] = PoolScan(lanes=p.P, channels=c, height=h, width=w,
                                                                kernel=p.stages[s].k)
        layer = Signal(range(p.top + 1))
        valid, first, pre = Signal(), Signal(), Signal(range(max(p.stage_blocks(s - 1) for s in self.pools)))
        lane = Signal(range(p.P))
        tap = Signal(range(max(p.stages[s].k ** 2 for s in self.pools)))
        pooled = Signal(range(max(p.stage_sizes[s] for s in self.pools)))
        m.d.sync += valid.eq(0)
        with m.FSM():
            with on_start(m, self):
                m.d.sync += layer.eq(self.stage)
                m.d.comb += [scans[s].start.eq(self.stage == s) for s in self.pools]
                enter_stage(m, self.stage, {s: f"UNPOOL_{s}" for s in self.pools})
            for s in self.pools:
                scan = scans[s]
                with m.State(f"UNPOOL_{s}"):
                    m.d.comb += [scan.advance.eq(1), self.disp_read.addr.eq(scan.pooled >> p.lg),
                                 self._read(f"argmin{s}").addr.eq(scan.pooled)]
                    m.d.sync += [valid.eq(1), pre.eq(scan.pre), lane.eq(scan.lane), tap.eq(scan.tap),
                                 first.eq(scan.first), pooled.eq(scan.pooled)]
                    with m.If(scan.done):
                        m.next = f"UNPOOL_END_{s}"
                with m.State(f"UNPOOL_END_{s}"):
                    with m.If(~valid):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
        for s in self.pools:
            with m.If(valid & (layer == s)):
                d, write = pick(p, self.disp_read.data, pooled), self.unpooled_write
                m.d.comb += [write.addr.eq(pre), write.en.eq(1 << lane)]
                m.d.comb += [write.data[q].eq(Mux(tap == self._read(f"argmin{s}").data, d, 0)) for q in range(p.P)]
                with m.If(first):
                    emit(StidiDebugKind.DISP, s, 0, pooled, value=[d])
        return m
