"""The conv and pooling phases of the STiDi-BP core's sequencer (rtl/stidi_core.py), P = 1.

``StidiCore.elaborate`` calls these for the conv and pooling stages of a conv topology; each function
takes the core, the module, the core's shared context and a stage index (the golden model's
stages: 0 = input, one per topology token). The datapath is the tested pieces of rtl/stidi_conv.py
and rtl/stidi_lanes.py; this file only sequences them (spec: docs/golden-spec-stidi.md, §n).

* ``FW_CONV_*`` (§5, golden ``conv_currents`` + ``integrate``), per output neuron (co, y, x) in flat
  order: ``FW_CONV_TAP`` reads the Cin*k*k window taps' spike times (``ConvTap``: padding is
  outside the map) and sign bits, adding +-1 into ``StepCurrents`` at the tap's step (spikes before
  T-1 only); ``FW_CONV_STEP`` drains C[0..T-1] into ``IntegrateLanes`` (one step per cycle, the
  STEP records), and the neuron's time goes into ``time_s``: K + T + 3 cycles per neuron.
* ``FW_POOL_*`` (§6, golden ``min_pool``): ``PoolScan`` walks the windows, one tap per cycle, into
  ``MinPool``; each window's time and argmin go into ``time_s`` and ``argmin_s`` (POOL record).
* ``CONV_*`` (§9.1–9.3, golden ``conv_backward``), after ``BW_PREP`` (D of the stage below cleared,
  its dropout bits drawn), per weight (co, tap): pass A over the H*W
  positions sums the steps in ``ConvUpdateLanes`` and writes ``sat(W - A)`` into ``W_l`` and the
  sign plane; pass B (only if the stage below is not the input) sends s*(W_new << lvl) of every
  position through ``DisplacementLanes`` into ``ScatterAdd``, D[pre] += term: 2*H*W + 12 cycles
  per weight.
* ``UNPOOL_*`` (§9.4, golden ``unpool``): D of a pooling stage goes to its window's argmin neuron
  of the conv stage below, 0 elsewhere (``unpooled``; the DISP records of the pooling stage).
"""

from amaranth.hdl import Mux, Signal, signed

from .stidi_conv import ConvTap, ConvUpdateLanes, PoolScan, ScatterAdd, StepCurrents
from .stidi_lanes import MinPool

__all__ = ["build_conv_parts", "start_map_stage", "conv_forward_states", "pool_forward_states",
           "start_conv_update", "conv_backward_states", "start_unpool", "unpool_states", "conv_stages"]


def _stages(p, kind):
    return [s for s in range(1, p.top + 1) if p.kind(s) == kind]


def build_conv_parts(core, m, ctx, memory):
    """The conv/pool pieces, memories and the registers of the phases here (conv topologies only)."""
    p = core.params
    if not p.is_conv:
        return
    cfg, T = p.cfg, p.T
    convs, pools = _stages(p, "conv"), _stages(p, "pool")
    ctx.conv_tap, ctx.conv_upd, ctx.pool_scan, ctx.min_pool, ctx.argmin = {}, {}, {}, {}, {}
    for s in convs:
        cin, h, w = p.stages[s - 1].shape
        ctx.conv_tap[s] = m.submodules[f"conv_tap{s}"] = ConvTap(channels=cin, height=h, width=w, kernel=p.stages[s].k)
        ctx.conv_upd[s] = m.submodules[f"conv_update{s}"] = ConvUpdateLanes(
            lanes=1, positions=h * w, weight_bits=cfg.weight_bits, levels=cfg.levels,
            max_lr_shift=ctx.max_lr_shift, time_steps=T)
    for s in pools:
        c, h, w = p.stages[s - 1].shape
        k = p.stages[s].k
        ctx.pool_scan[s] = m.submodules[f"pool_scan{s}"] = PoolScan(channels=c, height=h, width=w, kernel=k)
        ctx.min_pool[s] = m.submodules[f"min_pool{s}"] = MinPool(lanes=1, kernel=k, time_steps=T)
        ctx.argmin[s] = memory(f"argmin{s}", range(k * k), p.stage_sizes[s])
    ctx.currents = m.submodules.step_currents = StepCurrents(fan_in=max(p.fan_in(s) for s in convs), time_steps=T)
    if p.unpooled_words:
        ctx.unpooled = memory("unpooled", ctx.lanes(signed(p.disp_bits)), p.unpooled_words)
    if any(s >= 2 for s in convs):
        ctx.scatter = m.submodules.scatter = ScatterAdd(depth=max(p.hidden_blocks, 2), d_bits=p.disp_bits,
                                                       term_bits=ctx.dsp.term_bits)

    conv_sizes = [p.stage_sizes[s] for s in convs]
    maps = [p.stages[s - 1].shape for s in convs]
    taps = max(p.fan_in(s) for s in convs)
    # forward: the neuron (co, y, x) and tap being read; the data stages' valid bits
    ctx.cf_tap = Signal(range(taps))
    ctx.cf_y = Signal(range(max(h for _, h, _ in maps)))
    ctx.cf_x = Signal(range(max(w for _, _, w in maps)))
    ctx.cf_pos = Signal(range(max(h * w for _, h, w in maps)))
    ctx.cf_neuron = Signal(range(max(conv_sizes)))
    ctx.cf_sign_base = Signal(p.addr_bits + 1)      # co * K: the sign words of output channel co
    ctx.cf_step = Signal(range(T))
    ctx.cf_v, ctx.cf_inside = Signal(), Signal()    # a tap's time and sign arrive
    ctx.cs_v, ctx.cs_t = Signal(), Signal(range(T))  # C[t] arrives: integrate step t
    ctx.ct_v, ctx.ct_time = Signal(), Signal(range(T + 1))   # the neuron's TIMES record
    ctx.ct_neuron = Signal.like(ctx.cf_neuron)
    ctx.pf_v, ctx.pf_first, ctx.pf_last = Signal(), Signal(), Signal()   # a pooling tap's time arrives
    ctx.pf_pooled = Signal(range(max([p.stage_sizes[s] for s in pools], default=2)))
    ctx.pd_v, ctx.pd_pooled = Signal(), Signal.like(ctx.pf_pooled)        # a window's result is out
    # backward: the weight (co, tap) being updated, the position, the passes' data stages
    ctx.cw_co = Signal(range(max(p.stages[s].shape[0] for s in convs)))
    ctx.cw_tap = Signal.like(ctx.cf_tap)
    ctx.cw_addr = Signal(p.addr_bits + 1)           # co * K + tap
    ctx.cw_y, ctx.cw_x, ctx.cw_pos = Signal.like(ctx.cf_y), Signal.like(ctx.cf_x), Signal.like(ctx.cf_pos)
    ctx.cw_post_base = Signal(range(max(conv_sizes) + 1))   # co * H * W
    ctx.cw_w = Signal(signed(cfg.weight_bits))      # the weight before the update
    ctx.cw_new = Signal(signed(cfg.weight_bits))    # after it (pass B)
    ctx.cw_wait = Signal(range(16))
    ctx.ca_v, ctx.cb_v, ctx.ca_first, ctx.ca_inside = Signal(), Signal(), Signal(), Signal()
    ctx.ca_pre = Signal(range(max(p.stage_sizes[s - 1] for s in convs)))
    lat = ctx.dsp.latency if p.L >= 2 else 0
    ctx.db_v = [Signal(name=f"db_v{n}") for n in range(lat)]
    ctx.db_pre = [Signal.like(ctx.ca_pre, name=f"db_pre{n}") for n in range(lat)]
    # unpooling
    ctx.up_v, ctx.up_first = Signal(), Signal()
    ctx.up_pre = Signal(range(max(p.stage_sizes)))
    ctx.up_tap = Signal(range(max([p.stages[s].k ** 2 for s in pools], default=2)))
    ctx.up_pooled = Signal.like(ctx.pf_pooled)
    m.d.sync += [ctx.cf_v.eq(0), ctx.cs_v.eq(0), ctx.ct_v.eq(0), ctx.pf_v.eq(0), ctx.pd_v.eq(0), ctx.ca_v.eq(0),
                 ctx.cb_v.eq(0), ctx.up_v.eq(0)]


def start_map_stage(core, m, ctx, s):
    """Enter the forward pass of conv or pooling stage ``s``."""
    p = core.params
    m.d.sync += ctx.fw_layer.eq(s)
    if p.kind(s) == "conv":
        m.d.sync += [ctx.cf_tap.eq(0), ctx.cf_y.eq(0), ctx.cf_x.eq(0), ctx.cf_pos.eq(0), ctx.cf_neuron.eq(0),
                     ctx.cf_sign_base.eq(0)]
        m.next = f"FW_CONV_TAP_{s}"
    else:
        m.d.comb += ctx.pool_scan[s].start.eq(1)
        m.next = f"FW_POOL_{s}"


def _advance_position(m, y, x, pos, height, width):
    """(y, x) one position on in row-major order, ``pos`` = y*W + x with it; returns 'last position'."""
    last_x, last_y = x == width - 1, y == height - 1
    with m.If(~last_x):
        m.d.sync += [x.eq(x + 1), pos.eq(pos + 1)]
    with m.Elif(~last_y):
        m.d.sync += [x.eq(0), y.eq(y + 1), pos.eq(pos + 1)]
    with m.Else():
        m.d.sync += [x.eq(0), y.eq(0), pos.eq(0)]
    return last_x & last_y


def conv_forward_states(core, m, ctx, s):
    p = core.params
    T, K = p.T, p.fan_in(s)
    _, h, w = p.stages[s - 1].shape
    tap = ctx.conv_tap[s]
    with m.State(f"FW_CONV_TAP_{s}"):
        # read tap q's pre time and the sign of W[co, q]; the data stage adds it into C[t]
        m.d.comb += [tap.tap.eq(ctx.cf_tap), tap.y.eq(ctx.cf_y), tap.x.eq(ctx.cf_x), tap.pos.eq(ctx.cf_pos)]
        m.d.comb += [ctx.time[s - 1][0].addr.eq(tap.pre), ctx.sign[s][0].addr.eq(ctx.cf_sign_base + ctx.cf_tap)]
        m.d.sync += [ctx.cf_v.eq(1), ctx.cf_inside.eq(tap.inside), ctx.cf_tap.eq(ctx.cf_tap + 1)]
        with m.If(ctx.cf_tap == K - 1):
            m.next = f"FW_CONV_GAP_{s}"
    with m.State(f"FW_CONV_GAP_{s}"):
        # the last tap's add is in flight; the neuron starts at I = U = 0, silent
        m.d.sync += [ctx.cur_i.eq(0), ctx.cur_u.eq(0), ctx.cur_t[0].eq(T), ctx.cf_step.eq(0)]
        m.next = f"FW_CONV_STEP_{s}"
    with m.State(f"FW_CONV_STEP_{s}"):
        m.d.comb += [ctx.currents.drain.eq(1), ctx.currents.drain_t.eq(ctx.cf_step)]
        m.d.sync += [ctx.cs_v.eq(1), ctx.cs_t.eq(ctx.cf_step), ctx.cf_step.eq(ctx.cf_step + 1)]
        with m.If(ctx.cf_step == T - 1):
            m.next = f"FW_CONV_NEXT_{s}"
    with m.State(f"FW_CONV_NEXT_{s}"):
        # the last step integrates in this cycle; then the next neuron (co advances after H*W)
        m.d.sync += [ctx.cf_tap.eq(0), ctx.cf_neuron.eq(ctx.cf_neuron + 1)]
        with m.If(_advance_position(m, ctx.cf_y, ctx.cf_x, ctx.cf_pos, h, w)):
            m.d.sync += ctx.cf_sign_base.eq(ctx.cf_sign_base + K)
        with m.If(ctx.cf_neuron == p.stage_sizes[s] - 1):
            m.next = f"FW_CONV_END_{s}"
        with m.Else():
            m.next = f"FW_CONV_TAP_{s}"
    with m.State(f"FW_CONV_END_{s}"):
        core._start_stage(m, ctx, s + 1)            # the last time was written in the cycle before


def pool_forward_states(core, m, ctx, s):
    scan = ctx.pool_scan[s]
    with m.State(f"FW_POOL_{s}"):
        m.d.comb += [scan.advance.eq(1), ctx.time[s - 1][0].addr.eq(scan.pre)]
        m.d.sync += [ctx.pf_v.eq(1), ctx.pf_first.eq(scan.first), ctx.pf_last.eq(scan.last),
                     ctx.pf_pooled.eq(scan.pooled)]
        with m.If(scan.done):
            m.next = f"FW_POOL_END_{s}"
    with m.State(f"FW_POOL_END_{s}"):
        with m.If(~ctx.pf_v & ~ctx.pd_v):
            core._start_stage(m, ctx, s + 1)


def start_conv_update(core, m, ctx, s):
    """Enter the update of conv stage ``s`` (its pre stage's D is clear, if it has one)."""
    m.d.sync += [ctx.cw_co.eq(0), ctx.cw_tap.eq(0), ctx.cw_addr.eq(0), ctx.cw_post_base.eq(0)]
    m.next = f"CONV_W_{s}"


def _position_pass(core, m, ctx, s, name, valid, after):
    """One pass over the H*W positions of weight (co, tap): read the tap's pre time, the post's
    time and error; the data stages use them one cycle later."""
    p = core.params
    _, h, w = p.stages[s - 1].shape
    tap = ctx.conv_tap[s]
    with m.State(f"{name}_{s}"):
        post = ctx.cw_post_base + ctx.cw_pos
        m.d.comb += [tap.tap.eq(ctx.cw_tap), tap.y.eq(ctx.cw_y), tap.x.eq(ctx.cw_x), tap.pos.eq(ctx.cw_pos)]
        m.d.comb += [ctx.time[s - 1][0].addr.eq(tap.pre), ctx.time[s][0].addr.eq(post), ctx.err[0].addr.eq(post)]
        if ctx.dropout and s >= 2:
            m.d.comb += ctx.keep[0].addr.eq(tap.pre)        # the pre's dropout bit (§10.3)
        m.d.sync += [valid.eq(1), ctx.ca_first.eq(ctx.cw_pos == 0), ctx.ca_inside.eq(tap.inside),
                     ctx.ca_pre.eq(tap.pre)]
        with m.If(_advance_position(m, ctx.cw_y, ctx.cw_x, ctx.cw_pos, h, w)):
            m.d.sync += ctx.cw_wait.eq(0)
            m.next = f"{after}_{s}"


def conv_backward_states(core, m, ctx, s):
    p = core.params
    K, cout = p.fan_in(s), p.stages[s].shape[0]
    _, h, w = p.stages[s - 1].shape
    wl, upd = ctx.wl[s], ctx.conv_upd[s]
    want_d = s >= 2
    if want_d:
        core._prep_states(m, ctx, s)
    with m.State(f"CONV_W_{s}"):
        m.d.comb += ctx.bank.reads[wl - 1].addr.eq(ctx.cw_addr)
        m.next = f"CONV_W_HOLD_{s}"
    with m.State(f"CONV_W_HOLD_{s}"):
        m.d.sync += ctx.cw_w.eq(ctx.bank.reads[wl - 1].data[0])
        m.next = f"CONV_A_{s}"
    _position_pass(core, m, ctx, s, "CONV_A", ctx.ca_v, "CONV_A_WAIT")
    with m.State(f"CONV_A_WAIT_{s}"):
        # A is complete ConvUpdateLanes.latency cycles after the data stage of the last position
        m.d.sync += ctx.cw_wait.eq(ctx.cw_wait + 1)
        with m.If(ctx.cw_wait == ConvUpdateLanes.latency):
            write, sign_w = ctx.bank.writes[wl - 1], ctx.sign[s][1]
            new = upd.w_next[0]
            m.d.comb += [write.addr.eq(ctx.cw_addr), write.en.eq(1), write.data[0].eq(new),
                         sign_w.addr.eq(ctx.cw_addr), sign_w.data.eq(new[-1]), sign_w.en.eq(1)]
            m.d.sync += ctx.cw_new.eq(new)
            m.next = f"CONV_B_{s}" if want_d else f"CONV_NEXT_W_{s}"
    if want_d:
        _position_pass(core, m, ctx, s, "CONV_B", ctx.cb_v, "CONV_B_WAIT")
        with m.State(f"CONV_B_WAIT_{s}"):
            # the last term leaves DisplacementLanes, then ScatterAdd writes it
            m.d.sync += ctx.cw_wait.eq(ctx.cw_wait + 1)
            with m.If(ctx.cw_wait == len(ctx.db_v) + ScatterAdd.latency + 1):
                m.next = f"CONV_NEXT_W_{s}"
    with m.State(f"CONV_NEXT_W_{s}"):
        m.d.sync += [ctx.cw_addr.eq(ctx.cw_addr + 1), ctx.cw_tap.eq(ctx.cw_tap + 1)]
        with m.If(ctx.cw_tap == K - 1):
            m.d.sync += [ctx.cw_tap.eq(0), ctx.cw_co.eq(ctx.cw_co + 1), ctx.cw_post_base.eq(ctx.cw_post_base + h * w)]
            with m.If(ctx.cw_co == cout - 1):
                core._after_displacement(m, ctx, s)
            with m.Else():
                m.next = f"CONV_W_{s}"
        with m.Else():
            m.next = f"CONV_W_{s}"


def start_unpool(core, m, ctx, pool):
    """Enter the routing of pooling stage ``pool``'s D to the stage below (§9.4)."""
    m.d.comb += ctx.pool_scan[pool].start.eq(1)
    m.next = f"UNPOOL_{pool}"


def unpool_states(core, m, ctx, pool):
    scan = ctx.pool_scan[pool]
    with m.State(f"UNPOOL_{pool}"):
        m.d.comb += [scan.advance.eq(1), ctx.disp[0].addr.eq(scan.pooled), ctx.argmin[pool][0].addr.eq(scan.pooled)]
        m.d.sync += [ctx.up_v.eq(1), ctx.up_pre.eq(scan.pre), ctx.up_tap.eq(scan.tap), ctx.up_first.eq(scan.first),
                     ctx.up_pooled.eq(scan.pooled)]
        with m.If(scan.done):
            m.next = f"UNPOOL_END_{pool}"
    with m.State(f"UNPOOL_END_{pool}"):
        with m.If(~ctx.up_v):
            m.next = f"Q_PASS_{pool - 1}"


def conv_stages(core, m, ctx):
    """The data-arrival stages of the conv phases (outside the FSM, after it, like the core's own)."""
    p = core.params
    if not p.is_conv:
        return
    from .stidi_core import StidiDebugKind as K
    T = p.T
    for s in _stages(p, "conv"):
        # forward: a tap's time and sign -> C[t] +-= 1 (only spikes before T-1 count, §5)
        with m.If(ctx.cf_v & (ctx.fw_layer == s)):
            t = ctx.time[s - 1][0].data[0]
            with m.If(ctx.cf_inside & (t < T - 1)):
                m.d.comb += [ctx.currents.add.eq(1), ctx.currents.add_t.eq(t),
                             ctx.currents.add_negative.eq(ctx.sign[s][0].data[0])]
        # forward: C[t] -> one integrate-and-fire step; after step T-1 the spike time is stored
        with m.If(ctx.cs_v & (ctx.fw_layer == s)):
            integ = ctx.integ
            m.d.comb += [integ.i.eq(ctx.cur_i), integ.u.eq(ctx.cur_u), integ.t_fire.eq(ctx.cur_t),
                         integ.t.eq(ctx.cs_t), integ.threshold.eq(ctx.threshold(s)),
                         integ.delta[0].eq(ctx.currents.current)]
            m.d.sync += [ctx.cur_i.eq(integ.i_next), ctx.cur_u.eq(integ.u_next), ctx.cur_t.eq(integ.t_fire_next)]
            ctx.emit(K.STEP, s, ctx.cs_t, ctx.cf_neuron, value=[integ.u_next[0]], aux=[integ.i_next[0]])
            with m.If(ctx.cs_t == T - 1):
                time_w = ctx.time[s][1]
                m.d.comb += [time_w.addr.eq(ctx.cf_neuron), time_w.en.eq(1), time_w.data[0].eq(integ.t_fire_next[0])]
                m.d.sync += [ctx.ct_v.eq(1), ctx.ct_time.eq(integ.t_fire_next[0]), ctx.ct_neuron.eq(ctx.cf_neuron)]
        with m.If(ctx.ct_v & (ctx.fw_layer == s)):
            ctx.emit(K.TIMES, s, 0, ctx.ct_neuron, value=[ctx.ct_time])
        _conv_update_stage(core, m, ctx, s)
    for s in _stages(p, "pool"):
        _pool_stage(core, m, ctx, s, K)
    if hasattr(ctx, "scatter"):
        _scatter_stage(core, m, ctx)


def _conv_update_stage(core, m, ctx, s):
    """Backward data stages of conv stage ``s``: a position's times and error -> ConvUpdateLanes
    (pass A) or DisplacementLanes (pass B); outside the map the pre is padding (time T)."""
    p = core.params
    T = p.T
    # a pre outside the map (padding) or dropped (§10.3) never fired
    present = ctx.ca_inside & (ctx.keep[0].data[0] if ctx.dropout and s >= 2 else 1)
    t_pre = Mux(present, ctx.time[s - 1][0].data[0], T)
    t_post, err = ctx.time[s][0].data[0], ctx.err[0].data
    upd = ctx.conv_upd[s]
    m.d.comb += upd.w[0].eq(ctx.cw_w)
    with m.If(ctx.ca_v & (ctx.bw_layer == s)):
        m.d.comb += [upd.valid.eq(1), upd.first.eq(ctx.ca_first), upd.t_pre[0].eq(t_pre), upd.t_post[0].eq(t_post),
                     upd.keep.eq(1), upd.sign[0].eq(err.sign[0]), upd.level[0].eq(err.level[0]),
                     upd.lr_shift.eq(ctx.lr_shift[s])]
    if s < 2:
        return
    dsp = ctx.dsp
    with m.If(ctx.cb_v & (ctx.bw_layer == s)):
        m.d.comb += [dsp.w[0].eq(ctx.cw_new), dsp.t_post[0].eq(t_post), dsp.sign[0].eq(err.sign[0]),
                     dsp.level[0].eq(err.level[0]), dsp.t_pre.eq(t_pre), dsp.keep.eq(1)]


def _scatter_stage(core, m, ctx):
    """Pass B's terms leave DisplacementLanes ``dsp.latency`` cycles after their data stage and go
    into ScatterAdd, which adds them into ``disp`` (its read port is transparent)."""
    sc = ctx.scatter
    m.d.sync += [ctx.db_v[0].eq(ctx.cb_v), ctx.db_pre[0].eq(ctx.ca_pre)]
    for n in range(1, len(ctx.db_v)):
        m.d.sync += [ctx.db_v[n].eq(ctx.db_v[n - 1]), ctx.db_pre[n].eq(ctx.db_pre[n - 1])]
    m.d.comb += [sc.valid.eq(ctx.db_v[-1]), sc.addr.eq(ctx.db_pre[-1]), sc.term.eq(ctx.dsp.term),
                 sc.read.data.eq(ctx.disp[0].data[0])]
    with m.If(ctx.db_v[-1]):
        m.d.comb += ctx.disp[0].addr.eq(sc.read.addr)
    with m.If(sc.write.en):
        disp_w = ctx.disp[1]
        m.d.comb += [disp_w.addr.eq(sc.write.addr), disp_w.en.eq(1), disp_w.data[0].eq(sc.write.data)]


def _pool_stage(core, m, ctx, s, K):
    """Pooling data stages: forward taps -> MinPool -> time_s, argmin_s (POOL records); backward
    D of the window -> its argmin neuron of the stage below (DISP records of the pooling stage)."""
    pool = ctx.min_pool[s]
    with m.If(ctx.pf_v & (ctx.fw_layer == s)):
        m.d.comb += [pool.time[0].eq(ctx.time[s - 1][0].data[0]), pool.first.eq(ctx.pf_first)]
    m.d.sync += [ctx.pd_v.eq(ctx.pf_v & ctx.pf_last), ctx.pd_pooled.eq(ctx.pf_pooled)]
    with m.If(ctx.pd_v & (ctx.fw_layer == s)):
        time_w, arg_w = ctx.time[s][1], ctx.argmin[s][1]
        m.d.comb += [time_w.addr.eq(ctx.pd_pooled), time_w.en.eq(1), time_w.data[0].eq(pool.min_time[0]),
                     arg_w.addr.eq(ctx.pd_pooled), arg_w.en.eq(1), arg_w.data.eq(pool.argmin[0])]
        ctx.emit(K.POOL, s, 0, ctx.pd_pooled, value=[pool.min_time[0]], aux=[pool.argmin[0]])
    with m.If(ctx.up_v & (ctx.q_stage == s - 1)):
        d = ctx.disp[0].data[0]
        write = ctx.unpooled[1]
        m.d.comb += [write.addr.eq(ctx.up_pre), write.en.eq(1),
                     write.data[0].eq(Mux(ctx.up_tap == ctx.argmin[s][0].data, d, 0))]
        with m.If(ctx.up_first):
            ctx.emit(K.DISP, s, 0, ctx.up_pooled, value=[d])
