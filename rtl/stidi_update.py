"""The STiDi-BP core's fully connected update (§9.1–9.3): latent weights and the displacement D sent
to the stage below."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In

from .phase_ports import advance_or_leave, on_start
from .stidi_block_order import BlockOrder
from .stidi_lanes import DisplacementLanes, FcUpdateLanes, max_tree
from .stidi_ports import StidiPhase, each, enter_stage, lane_of, live_lanes, lowest_set

__all__ = ["StidiFcUpdate", "lr_shift_member", "clamped_lr_shift", "SORTED_ABOVE_BLOCKS"]

#: Above this many post blocks (the largest fc stage's ceil(N_l / P)) the update lists a pre's blocks
#: from ``BlockOrder`` (a counting sort, logic independent of the block count, about T + B more
#: cycles per stage); up to it, from a ``latest`` register and comparator per block (no sort).
SORTED_ABOVE_BLOCKS = 8


def times_constant(value, k):
    """``value`` * ``k`` for a constant ``k`` as a sum of shifted copies, one per set bit of k: the word
    of any block b (b * N_{l-1}) without a multiplier cell or a B-entry table."""
    terms = [value << bit for bit in range(k.bit_length()) if k >> bit & 1]
    return sum(terms[1:], terms[0])


def lr_shift_member(p):
    """The label beat's R of every weight layer (``params.label_layout``), for an update phase."""
    return In(data.ArrayLayout(unsigned(8), p.L))


def clamped_lr_shift(p, lr_shift, stage):
    """R of weight stage ``stage``; any R above the step's width gives step 0, as the clamp does."""
    r = lr_shift[p.weight_layer[stage] - 1]
    return Mux(r > p.max_lr_shift, p.max_lr_shift, r)


class StidiFcUpdate(StidiPhase):
    """Golden ``fc_backward`` of fc stage l (``stage``, with ``start``), P post lanes:

    * ``BW_LATEST_l``: per post block b, from its error and post times, ``latest[b]`` = 1 + the
      latest spike time of its posts with an error (0: none), and their maximum: a pre j needs
      block b only if t_j < ``latest[b]`` (golden: s_k != 0 and t_j <= t_k; the other words stay);
      up to ``SORTED_ABOVE_BLOCKS`` blocks into a register per block, else into ``BlockOrder``, which
      ``BW_SORT_l`` and ``BW_PLACE_l`` (every ``latest`` again) sort by ``latest``, descending;
    * ``BW_WORD_l`` reads the first word of P pres; ``BW_MASK_l``, one cycle per word: its eligible
      lanes (fired, kept, for l = 1 before T-1 as the golden model skips the others, and needing
      some block); the lowest is taken, with its blocks to update in ``todo`` (sorted: the first
      ``needed`` blocks of the order);
    * ``BW_BLOCK_l``: per block b the pre needs, read ``W_l[b, j]``, the block's error and post times;
      the update stages do the rest: ``FcUpdateLanes`` (rounded step << level, saturated), the new
      word into ``w<l>`` and its signs into ``s<l>``, and for l >= 2 into ``DisplacementLanes`` (D with
      the updated weights, §9.3), summed over the blocks into ``disp[j]``; the next eligible pre of
      the word is taken in the cycle of the last block;
    * ``BW_DRAIN_l`` waits for the pipelines.
    """

    def __init__(self, params):
        p = params
        self.stages = [s for s in p.weight_stages if p.kind(s) == "fc"]
        layers = [p.weight_layer[s] for s in self.stages]
        reads = [f"time{x}" for x in sorted({x for s in self.stages for x in (s - 1, s)})] + ["err"]
        reads += [f"w{l}" for l in layers] + (["keep"] if p.dropout else [])
        self.sends_down = any(s >= 2 for s in self.stages)
        writes = [f"w{l}" for l in layers] + [f"s{l}" for l in layers] + (["disp"] if self.sends_down else [])
        super().__init__(p, reads, writes, members={"stage": In(range(p.top + 1)), "lr_shift": lr_shift_member(p)})

    def elaborate(self, platform):
        p = self.params
        m = Module()
        self.upd = m.submodules.update = FcUpdateLanes(lanes=p.P, weight_bits=p.cfg.weight_bits, levels=p.cfg.levels,
                                                      max_lr_shift=p.max_lr_shift, time_steps=p.T)
        self.layer = Signal(range(p.top + 1))        # the stage being updated
        self.pre = Signal(range(p.max_fc_fan_in))
        blocks = max(p.stage_blocks(s) for s in self.stages)
        self.block = Signal(range(blocks))           # BW_LATEST's block
        self.word = Signal(range(max(p.stage_blocks(s - 1) for s in self.stages)))
        self.t_pre = Signal(range(p.T + 1))
        self.lanes_left = Signal(p.P)                # eligible pres of the word still to update
        self.sorted = blocks > SORTED_ABOVE_BLOCKS
        if self.sorted:
            self.order = m.submodules.order = BlockOrder(blocks=blocks, top_value=p.T + 1)
            self.pos = Signal(range(blocks))             # the pre's position in the sorted blocks
            self.needed = Signal(range(blocks + 1))      # the pre's number of blocks
            self.latest_max = self.order.top
        else:
            self.todo = Signal(blocks)                   # blocks the pre still needs
            self.latest = [Signal(range(p.T + 2), name=f"latest{b}") for b in range(blocks)]
            self.latest_max = Signal(range(p.T + 2))
        # BW_LATEST's (and BW_PLACE's) read data arrives: the block, and whether it is the stage's last
        self.lat_v, self.lat_block, self.lat_last = Signal(), Signal.like(self.block), Signal()
        # what BW_MASK/BW_BLOCK of the stage that runs give ``_take_stage`` (comb)
        self.pre_times = Signal(p.lanes(unsigned(p.time_bits)))     # the pre word read
        self.first_layer, self.live = Signal(), Signal(p.P)         # stage 1; the word's real lanes
        self.kept = Signal(p.P, init=(1 << p.P) - 1)                 # the word's dropout bits
        self.eligible, self.take, self.take_from = Signal(p.P), Signal(), Signal(p.P)
        m.d.sync += self.lat_v.eq(0)
        # update pipeline: u1 = read data arrives (FcUpdateLanes in), u2, u3 = its new word out;
        # u2 and u3 also carry the block's error and post times for DisplacementLanes
        self.u1, self.u2, self.u3 = self._stage("u1", False), self._stage("u2", True), self._stage("u3", True)
        m.d.sync += self.u1["v"].eq(0)
        # the displacement pipeline's control, DisplacementLanes' latency after u3
        latency = 0
        if self.sends_down:
            self.dsp = m.submodules.displace = DisplacementLanes(lanes=p.P, weight_bits=p.cfg.weight_bits,
                                                                 levels=p.cfg.levels, time_steps=p.T)
            latency = self.dsp.latency
        self.dq_v = [Signal(name=f"dq_v{n}") for n in range(latency)]
        self.dq_last = [Signal(name=f"dq_last{n}") for n in range(latency)]
        self.dq_pre = [Signal.like(self.pre, name=f"dq_pre{n}") for n in range(latency)]
        with m.FSM():
            with on_start(m, self):
                m.d.sync += [self.layer.eq(self.stage), self.block.eq(0), self.word.eq(0)]
                if self.sorted:
                    m.d.comb += self.order.start.eq(1)
                else:
                    m.d.sync += self.latest_max.eq(0)
                    m.d.sync += [latest.eq(0) for latest in self.latest]     # a layer with fewer blocks
                enter_stage(m, self.stage, {s: f"BW_LATEST_{s}" for s in self.stages})
            for s in self.stages:
                self._states(m, s)
        self._take_stage(m)
        self._latest_stage(m)
        self._update_stages(m)
        if self.sends_down:
            self._displacement_stages(m)
        return m

    def _stage(self, name, with_data):
        p = self.params
        regs = {"v": Signal(name=f"{name}_v"), "addr": Signal(p.addr_bits, name=f"{name}_addr"),
                "last": Signal(name=f"{name}_last"), "pre": Signal.like(self.pre, name=f"{name}_pre"),
                "t_pre": Signal(range(p.T + 1), name=f"{name}_t_pre")}
        if with_data:
            regs["t_post"] = Signal(p.lanes(unsigned(p.time_bits)), name=f"{name}_t_post")
            regs["err"] = Signal(p.err_layout, name=f"{name}_err")
        return regs

    def _states(self, m, l):
        p = self.params
        words, blocks = p.stage_blocks(l - 1), p.stage_blocks(l)
        time_pre, time_post = self._read(f"time{l - 1}"), self._read(f"time{l}")
        dropout = p.dropout and l >= 2

        def read_word(word):
            m.d.comb += time_pre.addr.eq(word)
            if dropout:
                m.d.comb += self.keep_read.addr.eq(word)

        def take_pre(lanes):
            """The lowest of ``lanes`` of the word read is the next pre (``_take_stage``)."""
            m.d.comb += [self.take.eq(1), self.take_from.eq(lanes)]
            read_word(self.word)

        def next_word():
            with m.If(self.word == words - 1):
                m.next = f"BW_DRAIN_{l}"
            with m.Else():
                read_word(self.word + 1)
                m.d.sync += self.word.eq(self.word + 1)
                m.next = f"BW_MASK_{l}"

        def read_latest(again, after):
            """One block's error and post times per cycle, for ``_latest_stage``."""
            m.d.comb += [time_post.addr.eq(self.block), self.err_read.addr.eq(self.block)]
            m.d.sync += [self.lat_v.eq(1), self.lat_block.eq(self.block), self.lat_last.eq(self.block == blocks - 1)]
            advance_or_leave(m, self.block, blocks - 1, again=again, after=after)

        if self.sorted:
            # the blocks' latest twice into BlockOrder: counted, then (after its prefix pass) placed
            with m.State(f"BW_LATEST_{l}"), m.If(self.order.can_count):
                read_latest(f"BW_LATEST_{l}", f"BW_SORT_{l}")
            with m.State(f"BW_SORT_{l}"):
                m.d.sync += self.block.eq(0)
                with m.If(self.order.can_place):
                    m.next = f"BW_PLACE_{l}"
            with m.State(f"BW_PLACE_{l}"):
                read_latest(f"BW_PLACE_{l}", f"BW_WORD_{l}")
            with m.State(f"BW_WORD_{l}"), m.If(self.order.ready):
                read_word(0)
                m.next = f"BW_MASK_{l}"
        else:
            with m.State(f"BW_LATEST_{l}"):
                read_latest(f"BW_LATEST_{l}", f"BW_WORD_{l}")
            with m.State(f"BW_WORD_{l}"):
                read_word(0)
                m.next = f"BW_MASK_{l}"
        with m.State(f"BW_MASK_{l}"):
            m.d.comb += each(p, self.pre_times, time_pre.data)
            m.d.comb += [self.first_layer.eq(l == 1), self.live.eq(live_lanes(p, self.word, l - 1))]
            if dropout:
                m.d.comb += self.kept.eq(self.keep_read.data)
            with m.If(self.eligible.any()):
                take_pre(self.eligible)
                m.next = f"BW_BLOCK_{l}"
            with m.Else():
                next_word()
        with m.State(f"BW_BLOCK_{l}"):
            # read W_l[b, j], the block's error and post times; the update stages do the rest
            block, last = self._next_block(m)
            addr = times_constant(block, p.stage_sizes[l - 1]) + self.pre
            m.d.comb += [self._read(f"w{p.weight_layer[l]}").addr.eq(addr), self.err_read.addr.eq(block),
                         time_post.addr.eq(block)]
            m.d.sync += [self.u1["v"].eq(1), self.u1["addr"].eq(addr), self.u1["last"].eq(last),
                         self.u1["pre"].eq(self.pre), self.u1["t_pre"].eq(self.t_pre)]
            with m.If(~last):
                read_word(self.word)
            with m.Elif(self.lanes_left.any()):
                m.d.comb += each(p, self.pre_times, time_pre.data)
                take_pre(self.lanes_left)
            with m.Else():
                next_word()
        with m.State(f"BW_DRAIN_{l}"):
            with m.If(~(self.u1["v"] | self.u2["v"] | self.u3["v"] | Cat(*self.dq_v).any())):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

    def _next_block(self, m):
        """BW_BLOCK's block of the pre (``block``) and whether it is the pre's last (``last``): the
        lowest of ``todo``; or (sorted) the next of the first ``needed`` blocks of ``BlockOrder``: each
        position is read in the cycle before (the first and the count when the pre was taken), so the
        memories' read latency costs no cycle."""
        if not self.sorted:
            rest = Signal.like(self.todo)
            m.d.comb += rest.eq(self.todo & (self.todo - 1))
            m.d.sync += self.todo.eq(rest)
            return lowest_set(self.todo), rest == 0
        order, first = self.order, self.pos == 0
        needed = Mux(first, order.needed, self.needed)
        m.d.comb += order.pos.eq(self.pos + 1)
        m.d.sync += [self.needed.eq(needed), self.pos.eq(self.pos + 1)]
        return order.block_at, self.pos + 1 == needed

    def _take_stage(self, m):
        """One datapath for every stage: the eligible lanes of the pre word read (fired, for layer 1
        before T-1 as golden fc_backward, kept, and early enough for some block's error post), and
        when a state takes a pre from ``take_from``: the lowest lane, its time, and the blocks whose
        ``latest`` it is before (``todo``; or sorted: their number and the first one are read)."""
        p = self.params
        limit = Mux(self.first_layer, p.T - 1, p.T)
        times = [self.pre_times[q] for q in range(p.P)]
        m.d.comb += self.eligible.eq(Cat(*((t < limit) & (t < self.latest_max) for t in times)) & self.live & self.kept)
        lane = lowest_set(self.take_from)
        t = Array(times)[lane]
        with m.If(self.take):
            m.d.sync += [self.pre.eq(Cat(lane, self.word)), self.t_pre.eq(t),
                         self.lanes_left.eq(self.take_from & (self.take_from - 1))]
            if self.sorted:
                m.d.comb += [self.order.t.eq(t), self.order.pos.eq(0)]
                m.d.sync += self.pos.eq(0)
            else:
                m.d.sync += self.todo.eq(Cat(*(latest > t for latest in self.latest)))

    def _latest_stage(self, m):
        """BW_LATEST's read data: ``latest`` of the block, and the maximum over the blocks; or (sorted)
        both passes' ``latest`` into ``BlockOrder``."""
        p = self.params
        for l in self.stages:
            time_post = self._read(f"time{l}")
            with m.If(self.lat_v & (self.layer == l)):
                latest = max_tree([Mux(self.err_read.data.sign[q] != 0, time_post.data[q] + 1, 0) for q in range(p.P)])
                if self.sorted:
                    order = self.order
                    m.d.comb += [order.value_v.eq(1), order.value.eq(latest), order.value_block.eq(self.lat_block),
                                 order.value_last.eq(self.lat_last)]
                else:
                    m.d.sync += Array(self.latest)[self.lat_block].eq(latest)
                    with m.If(latest > self.latest_max):
                        m.d.sync += self.latest_max.eq(latest)

    def _update_stages(self, m):
        """The read-modify-write of one weight word per cycle: u1 read data -> ``FcUpdateLanes`` -> u3
        new word -> ``w<l>`` and ``s<l>``."""
        p = self.params
        u1, u2, u3, upd = self.u1, self.u2, self.u3, self.upd
        for l in self.stages:
            layer = p.weight_layer[l]
            time_post = self._read(f"time{l}")
            with m.If(u1["v"] & (self.layer == l)):
                m.d.comb += [upd.lr_shift.eq(clamped_lr_shift(p, self.lr_shift, l)), upd.keep.eq((1 << p.P) - 1)]
                m.d.comb += [upd.t_pre[q].eq(u1["t_pre"]) for q in range(p.P)]
                m.d.comb += each(p, upd.w, self._read(f"w{layer}").data) + each(p, upd.t_post, time_post.data)
                m.d.comb += each(p, upd.sign, self.err_read.data.sign) + each(p, upd.level, self.err_read.data.level)
                m.d.sync += [u2["t_post"].eq(time_post.data), u2["err"].eq(self.err_read.data)]
        m.d.sync += [u2[key].eq(u1[key]) for key in u1]
        m.d.sync += [u3[key].eq(u2[key]) for key in u2]
        for l in self.stages:
            layer = p.weight_layer[l]
            with m.If(u3["v"] & (self.layer == l)):
                write, sign_w = self._write(f"w{layer}"), self._write(f"s{layer}")
                m.d.comb += [write.addr.eq(u3["addr"]), write.en.eq(1)] + each(p, write.data, upd.w_next)
                m.d.comb += [sign_w.addr.eq(u3["addr"]), sign_w.data.eq(upd.negative), sign_w.en.eq(1)]

    def _displacement_stages(self, m):
        """u3's new word -> ``DisplacementLanes`` -> D_j summed over the post blocks into ``disp[j]``."""
        p = self.params
        u3, dsp, dq_v, dq_last, dq_pre = self.u3, self.dsp, self.dq_v, self.dq_last, self.dq_pre
        m.d.comb += [dsp.t_pre.eq(u3["t_pre"]), dsp.keep.eq(1)]
        m.d.comb += each(p, dsp.w, self.upd.w_next) + each(p, dsp.t_post, u3["t_post"])
        m.d.comb += each(p, dsp.sign, u3["err"].sign) + each(p, dsp.level, u3["err"].level)
        m.d.sync += [dq_v[0].eq(u3["v"] & (self.layer >= 2)), dq_last[0].eq(u3["last"]), dq_pre[0].eq(u3["pre"])]
        for n in range(1, dsp.latency):
            m.d.sync += [dq_v[n].eq(dq_v[n - 1]), dq_last[n].eq(dq_last[n - 1]), dq_pre[n].eq(dq_pre[n - 1])]
        disp_acc = Signal(signed(p.disp_bits))
        with m.If(dq_v[-1]):
            total = Signal(signed(p.disp_bits))
            m.d.comb += total.eq(disp_acc + dsp.term)
            with m.If(dq_last[-1]):
                pre, disp_w = dq_pre[-1], self.disp_write
                m.d.comb += [disp_w.addr.eq(pre >> p.lg), disp_w.en.eq(1 << lane_of(p, pre))]
                m.d.comb += [disp_w.data[q].eq(total) for q in range(p.P)]
                m.d.sync += disp_acc.eq(0)
            with m.Else():
                m.d.sync += disp_acc.eq(total)
