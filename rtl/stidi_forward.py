"""The STiDi-BP core's fully connected forward pass (§5): every fc stage, from the first to the top."""

from amaranth.hdl import Array, Cat, Mux, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from .stidi_lanes import IntegrateLanes, SignAccumulateLanes
from .stidi_params import StidiDebugKind
from .stidi_ports import StagePass, each, live_lanes, lowest_set

__all__ = ["StidiFcForward"]


class StidiFcForward(StagePass):
    """Golden ``fc_currents`` + ``integrate`` of every fc stage l, in order, on P lanes (P posts of a block):

    * ``FW_LIST_l``: every step's spike list starts empty (its valid bit cleared: one cycle, no
      loop over the T heads), and word 0 of ``time<l-1>`` is read;
    * ``FW_LINK_l``: per word of P pres, one cycle per pre of it that spikes before T-1 (a later spike
      cannot change a membrane, §5), one for a word without any: the lowest such lane is linked
      into the list of its step (the list stage writes it one cycle later); ``FW_LIST_DRAIN_l``
      waits for the last link;
    * ``FW_WALK_l``: per post block b and step t, one list entry per cycle fetches its sign word of
      ``s<l>`` into ``SignAccumulateLanes``; at the list's end (NIL) step t integrates
      (``IntegrateLanes``, a STEP record; the top stage's U(t) into ``u_out``);
    * ``FW_BLOCK_END_l``: the block's spike times into ``time<l>`` (a TIMES record).

    An inference (``train`` low) exits early in the top stage (§7, golden ``early_exit_steps``): a block
    ends after the step in which one of its neurons fires (a cycle later: ``exit_pending``), and no
    later than the step at which an earlier block ended on a spike (``horizon``).
    """

    def __init__(self, params):
        p = params
        self.stages = [s for s in p.weight_stages if p.kind(s) == "fc"]
        reads = [f"time{s - 1}" for s in self.stages] + [f"s{p.weight_layer[s]}" for s in self.stages]
        writes = [f"time{s}" for s in self.stages] + ["u_out"]
        super().__init__(p, reads, writes, members={"train": In(1)})

    def _stage_states(self, m, s):
        self._list_states(m, s)
        self._walk_states(m, s)

    def _data_stages(self, m):
        self._list_stage(m)

    def _parts(self, m):
        p = self.params
        T = p.T
        self.nil = p.max_fc_fan_in                       # the end of a list
        pointer = unsigned(self.nil.bit_length())
        # per-step spike lists of the pre stage: head[t] -> next[i] -> ... -> NIL
        head, nxt = Memory(shape=pointer, depth=max(T, 2), init=[]), Memory(shape=pointer, depth=max(self.nil, 2), init=[])
        m.submodules.head, m.submodules.next = head, nxt
        self.head_r, self.head_w = head.read_port(), head.write_port()
        self.next_r, self.next_w = nxt.read_port(), nxt.write_port()
        self.acc = m.submodules.sign_acc = SignAccumulateLanes(lanes=p.P, fan_in=p.max_fc_fan_in)
        self.integ = m.submodules.integrate = IntegrateLanes(lanes=p.P, fan_in=p.max_fan_in + 1, time_steps=T)

        self.layer = Signal(range(p.top + 1))            # the stage of the pass
        self.block = Signal(range(max(p.stage_blocks(s) for s in self.stages)))
        self.step = Signal(range(T))
        self.horizon = Signal(range(T), init=T - 1)     # the last step of the top stage's next block
        self.exit_pending = Signal()                     # the block ends in the next cycle (early exit)
        self.sign_base = Signal(p.addr_bits + 1)         # b * N_{l-1}: block b's sign words
        self.u_base = Signal(range(p.stage_blocks(p.top) * T + 1))   # b * T: block b's membranes in u_out
        self.walk_first = Signal()                       # the walk's pointer comes from head (else next)
        self.sign_valid = Signal()                       # a sign word arrives this cycle
        self.cur_i = Signal(self.integ.i.shape())
        self.cur_u = Signal(self.integ.u.shape())
        self.cur_t = Signal(self.integ.t_fire.shape())
        self.delta = Signal(self.acc.delta.shape())
        # head[t] holds a list of this stage only if bit t is set: the lists empty in one cycle
        self.head_valid = Signal(max(T, 2))
        # the walk's copy, shifted at every step: bit 0 is the current step's (timing: no T-way
        # multiplexer between the step counter and the walk)
        self.walk_valid = Signal(max(T, 2))
        # list build: the word's lanes still to link (all of a word whose time read just arrived:
        # word_fresh), the head read (ins), the head/next write (prev = the write a cycle before)
        self.word = Signal(range(max(p.stage_blocks(s - 1) for s in self.stages)))
        self.word_fresh, self.lanes_left = Signal(), Signal(p.P)
        # FW_LINK of the stage that runs gives the list stage its time word and live lanes (one
        # datapath for every stage); the lanes left after this cycle's link come back
        self.link, self.link_live, self.link_rest = Signal(), Signal(p.P), Signal(p.P)
        self.link_times = Signal(p.lanes(unsigned(p.time_bits)))
        pre = range(p.max_fc_fan_in)
        self.sel_v, self.sel_pre, self.sel_t = Signal(), Signal(pre), Signal(range(T + 1))
        self.ins_v, self.ins_pre, self.ins_t = Signal(), Signal(pre), Signal(range(T + 1))
        self.prev_v, self.prev_pre, self.prev_t = Signal(), Signal(pre), Signal(range(T + 1))
        m.d.sync += [self.sel_v.eq(0), self.ins_v.eq(0), self.sign_valid.eq(0)]

    def _enter(self, m, s):
        if s > self.params.top:
            m.d.comb += self.done.eq(1)
            m.next = "IDLE"
        else:
            m.d.sync += [self.step.eq(0), self.layer.eq(s), self.horizon.eq(self.params.T - 1)]
            m.next = f"FW_LIST_{s}"

    def _clear_neurons(self, m):
        """A block's walk starts: its neurons at rest, at step 0's list."""
        m.d.sync += [self.cur_i.eq(0), self.cur_u.eq(0), self.delta.eq(0), self.walk_first.eq(1),
                     self.walk_valid.eq(self.head_valid)]
        m.d.sync += [self.cur_t[q].eq(self.params.T) for q in range(self.params.P)]

    def _list_states(self, m, l):
        p = self.params
        time_r = self._read(f"time{l - 1}")
        with m.State(f"FW_LIST_{l}"):
            m.d.comb += time_r.addr.eq(0)
            m.d.sync += [self.head_valid.eq(0), self.word.eq(0), self.word_fresh.eq(1)]
            m.next = f"FW_LINK_{l}"
        with m.State(f"FW_LINK_{l}"):
            # the time word stays read at ``word`` until its last spiking lane is linked
            m.d.comb += [self.link.eq(1), self.link_live.eq(live_lanes(p, self.word, l - 1))]
            m.d.comb += each(p, self.link_times, time_r.data)
            with m.If(self.link_rest != 0):
                m.d.comb += time_r.addr.eq(self.word)
            with m.Elif(self.word == p.stage_blocks(l - 1) - 1):
                m.next = f"FW_LIST_DRAIN_{l}"
            with m.Else():
                m.d.comb += time_r.addr.eq(self.word + 1)
                m.d.sync += self.word.eq(self.word + 1)
        with m.State(f"FW_LIST_DRAIN_{l}"):
            # the last head/next write happens in the last cycle with ins_v
            with m.If(~self.sel_v & ~self.ins_v):
                m.d.comb += self.head_r.addr.eq(0)
                m.d.sync += [self.block.eq(0), self.sign_base.eq(0), self.u_base.eq(0), self.step.eq(0)]
                self._clear_neurons(m)
                m.next = f"FW_WALK_{l}"

    def _walk_states(self, m, l):
        p = self.params
        T, sign_r = p.T, self._read(f"s{p.weight_layer[l]}")
        with m.State(f"FW_WALK_{l}"):
            # one list entry per cycle: fetch its sign word and the next pointer; at the list's end
            # (NIL) step t of the block's P neurons integrates, and the next step's head is read
            pointer = Mux(self.walk_first, self._head(self.walk_valid[0]), self.next_r.data)
            m.d.sync += self.walk_first.eq(0)
            # Timing: what does not need the pointer (a memory output) does not wait for it. The next
            # step's head is read in every cycle (only a step's last cycle uses it), the integration
            # runs in every cycle (only a step's last cycle keeps it).
            m.d.comb += self.head_r.addr.eq(Mux(self.step == T - 1, 0, self.step + 1))
            m.d.comb += [self.acc.spike.eq(self.sign_valid), self.acc.negative.eq(sign_r.data),
                         self.acc.delta.eq(self.delta)]
            integ = self.integ
            m.d.comb += [integ.i.eq(self.cur_i), integ.u.eq(self.cur_u), integ.t_fire.eq(self.cur_t),
                         integ.t.eq(self.step), integ.threshold.eq(p.threshold(l))]
            m.d.comb += each(p, integ.delta, self.acc.delta_next)   # I is one bit wider at F + 1 = 2**n
            with m.If(self.exit_pending):
                # a neuron of the block fired at the step before (its integration's cycle could not
                # also decide the exit: timing); nothing of this cycle is kept
                m.d.sync += self.exit_pending.eq(0)
                m.next = f"FW_BLOCK_END_{l}"
            with m.Elif(pointer != self.nil):
                m.d.comb += [self.next_r.addr.eq(pointer), sign_r.addr.eq(self.sign_base + pointer)]
                m.d.sync += [self.sign_valid.eq(1), self.delta.eq(self.acc.delta_next)]
            with m.Else():
                m.d.sync += [self.cur_i.eq(integ.i_next), self.cur_u.eq(integ.u_next),
                             self.cur_t.eq(integ.t_fire_next), self.delta.eq(0), self.walk_first.eq(1)]
                self.emit(StidiDebugKind.STEP, l, self.step, self.block << p.lg,
                          value=[integ.u_next[q] for q in range(p.P)], aux=[integ.i_next[q] for q in range(p.P)])
                if l == p.top:
                    u_w = self.u_out_write
                    m.d.comb += [u_w.addr.eq(self.u_base + self.step), u_w.en.eq(1)]
                    m.d.comb += each(p, u_w.data, integ.u_next)
                    # early exit (inference): a spike of the block ends it after this step, and the
                    # blocks after it at this step at the latest
                    fired = Cat(*(integ.t_fire_next[q] < T for q in range(p.P))) & live_lanes(p, self.block, l)
                    exit_now = ~self.train & fired.any()
                    with m.If(exit_now):
                        m.d.sync += self.horizon.eq(self.step)
                    last_step = self.step == self.horizon
                    m.d.sync += self.exit_pending.eq(exit_now & ~last_step)
                else:
                    last_step = self.step == T - 1
                with m.If(last_step):
                    m.next = f"FW_BLOCK_END_{l}"
                with m.Else():
                    m.d.sync += [self.step.eq(self.step + 1), self.walk_valid.eq(self.walk_valid >> 1)]
        with m.State(f"FW_BLOCK_END_{l}"):
            time_w = self._write(f"time{l}")
            m.d.comb += [time_w.addr.eq(self.block), time_w.en.eq((1 << p.P) - 1)]
            m.d.comb += each(p, time_w.data, self.cur_t)
            self.emit(StidiDebugKind.TIMES, l, 0, self.block << p.lg, value=[self.cur_t[q] for q in range(p.P)])
            self._clear_neurons(m)
            m.d.sync += self.step.eq(0)
            with m.If(self.block == p.stage_blocks(l) - 1):
                self._enter(m, l + 1)
            with m.Else():
                m.d.comb += self.head_r.addr.eq(0)
                m.d.sync += [self.block.eq(self.block + 1), self.sign_base.eq(self.sign_base + p.stage_sizes[l - 1]),
                             self.u_base.eq(self.u_base + T)]
                m.next = f"FW_WALK_{l}"

    def _head(self, valid):
        """The head word read a cycle before: NIL unless its step's list was started in this stage
        (``valid``, the step's bit of ``head_valid``)."""
        return Mux(valid, self.head_r.data, self.nil)

    def _list_stage(self, m):
        """Spike-list build: in FW_LINK, the lowest lane of the word still to link that spikes before
        T-1 is selected (``sel``: registered, for timing, as the time word is a memory output); the
        next cycle reads the head of its step, and one cycle later pre i of that lane becomes the head
        and points at the old head. Only the write of the cycle before can be missing from that read
        (the memory is not transparent), and it is forwarded; the step's valid bit is read in the
        write's cycle."""
        p = self.params
        early = Cat(*(self.link_times[q] < p.T - 1 for q in range(p.P))) & self.link_live
        lanes = Mux(self.word_fresh, early, self.lanes_left)
        lane = lowest_set(lanes)
        m.d.comb += self.link_rest.eq(lanes & (lanes - 1))          # the lowest set lane cleared
        with m.If(self.link):
            m.d.sync += [self.lanes_left.eq(self.link_rest), self.word_fresh.eq(self.link_rest == 0)]
            with m.If(lanes.any()):
                t = Array(self.link_times[q] for q in range(p.P))[lane]
                m.d.sync += [self.sel_v.eq(1), self.sel_pre.eq(Cat(lane, self.word)), self.sel_t.eq(t)]
        with m.If(self.sel_v):
            m.d.comb += self.head_r.addr.eq(self.sel_t)
            m.d.sync += [self.ins_v.eq(1), self.ins_pre.eq(self.sel_pre), self.ins_t.eq(self.sel_t)]
        with m.If(self.ins_v):
            old = Mux(self.prev_v & (self.prev_t == self.ins_t), self.prev_pre,
                      self._head(self.head_valid.bit_select(self.ins_t, 1)))
            m.d.comb += [self.head_w.addr.eq(self.ins_t), self.head_w.data.eq(self.ins_pre), self.head_w.en.eq(1),
                         self.next_w.addr.eq(self.ins_pre), self.next_w.data.eq(old), self.next_w.en.eq(1)]
            m.d.sync += self.head_valid.bit_select(self.ins_t, 1).eq(1)
        m.d.sync += [self.prev_v.eq(self.ins_v), self.prev_pre.eq(self.ins_pre), self.prev_t.eq(self.ins_t)]
