"""The desire-BP core's forward pass: golden ``forward``, T steps of L layers on P lanes."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from amaranth.utils import ceil_log2

from .desire_ports import DebugKind, Phase, debug_emitter, keep_bits, phase_members, start_state
from .lanes import EncoderLanes, NeuronLanes, TraceLanes
from .memories import COLLISION_ATTR

__all__ = ["DesireForward"]


class DesireForward(Phase):
    """For t in 0..T-1, for l in 1..L: scan, then the post blocks.

    * ``SCAN_RD_l`` / ``SCAN_EX_l``: the input words of layer l (P inputs each; the encoder for
      l = 1, the raster ``r<l-1>`` of step t-1 otherwise); the word's traces and "ever spiked" bits
      are written a cycle later (SCAN records). ``SCAN_RD_l`` first puts the spiking inputs of the
      word scanned last into the spike list, one per cycle, and reads their block-0 weight words.
    * ``NRD_l`` / ``NEX_l``: block b's v and counts into ``NeuronLanes`` (its write, a NEURON
      record, ``latency`` cycles later); before every further block ``SLR_l`` replays the spike
      list into ``acc`` (event-driven: zero spikes cost nothing) and ``DRAIN_l`` waits for its last
      word. ``NDRAIN_l`` waits for the layer's last block before l or t moves on.
    """

    def __init__(self, params):
        self.params = p = params
        layers = range(1, p.L + 1)
        reads = ["pix", "vin"] + [f"mask{l}" for l in range(p.L) if p.maskable(l)]
        reads += [f"{kind}{l}" for l in layers for kind in ("w", "v", "c", "x", "ever")]
        reads += [f"r{l}" for l in range(1, p.L)]
        writes = ["vin"] + [f"{kind}{l}" for l in layers for kind in ("v", "c", "r", "x", "ever")]
        super().__init__({**phase_members(p, reads, writes), "train": In(1)})

    def elaborate(self, platform):
        p = self.params
        m = Module()
        s = self._registers(m)
        s.emit = debug_emitter(m, self)
        self._accumulate(m, s)
        with m.FSM():
            start_state(m)
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [s.t.eq(0), s.k.eq(0), s.b.eq(0), s.bbase.eq(0), s.ns.eq(0), s.pend.eq(0)]
                    m.d.sync += [tbase.eq(0) for tbase in s.tbase.values()]
                    m.next = "SCAN_RD_1"
            for l in range(1, p.L + 1):
                self._scan_states(m, s, l)
                self._block_states(m, s, l)
        # data-arrival stages after the FSM: where one drives what a state does, the stage wins
        for l in range(1, p.L + 1):
            self._spike_list_stage(m, s, l)
        for l in range(1, p.L + 1):
            self._scan_stage(m, s, l)
            self._neuron_stage(m, s, l)
        return m

    def _registers(self, m):
        p, cfg = self.params, self.params.cfg
        P, L, T = p.P, p.L, cfg.time_steps
        s = SimpleNamespace()
        s.enc = m.submodules.enc = EncoderLanes(P, pixel_max=cfg.pixel_max)
        # one set of lanes for every layer: a layer drains them before the next starts; the widths
        # are the widest layer's (the values are exact sums, a wider lane changes no bit)
        s.tr = m.submodules.trace = TraceLanes(P, trace_bits=cfg.trace_bits, decay_shift=cfg.decay_shift,
                                               frac_bits=cfg.trace_frac_bits)
        s.nl = m.submodules.neuron = NeuronLanes(P, membrane_bits=cfg.membrane_bits, acc_bits=p.lane_acc_bits,
                                                 decay_shift=cfg.decay_shift, threshold_bits=cfg.membrane_bits)
        maxn_in = max(p.sizes[:-1])
        # written in SCAN_RD, read in SLR: never in one cycle (COLLISION_ATTR)
        spike_list = m.submodules.spike_list = Memory(shape=unsigned(max(ceil_log2(maxn_in), 1)),
                                                      depth=max(maxn_in, 2), init=[], attrs={COLLISION_ATTR: "1"})
        s.sl_r, s.sl_w = spike_list.read_port(), spike_list.write_port()

        s.t = Signal(range(T + 1))                 # time step
        # base address of step t's words in the raster / trace memories of layer x
        s.tbase = {x: Signal(max(ceil_log2(T * p.blocks(x)), 1), name=f"tbase{x}") for x in range(0, L + 1)}
        s.k = Signal(range(max(p.blocks(x) for x in range(L)) + 1))       # input word of the scan
        s.b = Signal(range(max(p.blocks(l) for l in range(1, L + 1)) + 1))  # post block
        s.bbase = Signal(p.addr_bits + 1)          # block b's first weight word
        s.ns = Signal(range(maxn_in + 1))          # spikes in the list
        s.ns_last = Signal.like(s.ns)              # ns - 1, kept beside it (SLR's last-entry test is an equality)
        s.e = Signal(range(maxn_in + 1))           # spike-list entry being replayed
        s.pend = Signal(P)                          # spiking inputs of the word scanned last, not yet listed
        s.kbase = Signal(max(ceil_log2(maxn_in), 1) + 1)   # their word's first input
        s.rd_word, s.rd_blk = Signal.like(s.k), Signal.like(s.b)   # word / block whose read data arrives
        s.layer = Signal(range(L + 1))             # layer of the spike-list replay (selects its stage)
        s.acc = Signal(data.ArrayLayout(signed(p.lane_acc_bits), P))
        # W_l words in flight: [0] set in the cycle of the read, [-1] in the cycle its word arrives
        s.w_due = {l: [Signal(name=f"w_due{l}_{n}") for n in range(p.weight_read_latency)] for l in range(1, L + 1)}
        # spike-list replay: the entry arrives (sl_v) and its weight address of block b goes to W_l,
        # whose registered ports take the route to the block RAMs out of this cycle
        s.sl_v = Signal()
        m.d.sync += s.sl_v.eq(0)
        # NEX control delayed along the NeuronLanes pipeline: valid, layer, block, the counts read
        lat = s.nl.latency
        s.nrn_v = [Signal(name=f"nrn_v{n}") for n in range(lat)]
        s.nrn_l = [Signal(range(L + 1), name=f"nrn_l{n}") for n in range(lat)]
        s.nrn_b = [Signal.like(s.b, name=f"nrn_b{n}") for n in range(lat)]
        s.nrn_c = [Signal(data.ArrayLayout(unsigned(cfg.count_bits), P), name=f"nrn_c{n}") for n in range(lat)]
        m.d.sync += s.nrn_v[0].eq(0)
        for n in range(1, lat):
            m.d.sync += [s.nrn_v[n].eq(s.nrn_v[n - 1]), s.nrn_l[n].eq(s.nrn_l[n - 1]), s.nrn_b[n].eq(s.nrn_b[n - 1]),
                         s.nrn_c[n].eq(s.nrn_c[n - 1])]
        # scan write stage: SCAN_EX's word, one cycle later
        s.sc_v = {l: Signal(name=f"sc_v{l}") for l in range(1, L + 1)}
        s.sc_k = Signal.like(s.k)
        s.sc_spk, s.sc_ever = Signal(P), Signal(P)
        s.sc_x = Signal(data.ArrayLayout(unsigned(cfg.trace_bits), P))
        m.d.sync += [v.eq(0) for v in s.sc_v.values()]
        return s

    def _accumulate(self, m, s):
        """ACC += the arriving W_l word, from a register (a large W is many block RAMs behind an
        output multiplexer; that and a carry chain do not fit one cycle)."""
        P = self.params.P
        acc_word = Signal(data.ArrayLayout(signed(self.params.cfg.weight_bits), P))
        acc_add = Signal()
        for l, due in s.w_due.items():
            with m.If(due[-1]):
                m.d.sync += acc_word.eq(self._read(f"w{l}").data)
            m.d.sync += [due[0].eq(0)] + [due[n].eq(due[n - 1]) for n in range(1, len(due))]
        m.d.sync += acc_add.eq(Cat(*(due[-1] for due in s.w_due.values())).any())
        with m.If(acc_add):
            m.d.sync += [s.acc[q].eq(s.acc[q] + acc_word[q]) for q in range(P)]
        # NeuronLanes takes acc one cycle after NEX (its stage 2), when the block's last word is
        # in; the next block's first word arrives three cycles after that at the earliest
        m.d.comb += [s.nl.acc[q].eq(s.acc[q]) for q in range(P)]
        with m.If(s.nrn_v[0]):
            m.d.sync += [s.acc[q].eq(0) for q in range(P)]

    def _scan_states(self, m, s, l):
        p = self.params
        P, lg, nw = p.P, p.lg, p.blocks(l - 1)
        with m.State(f"SCAN_RD_{l}"):
            # the spiking inputs of the word scanned last (pend, registered by SCAN_EX) enter the
            # spike list one per cycle, and block 0 fetches their weights; only then is the next word
            # read. SCAN_EX's combinational spikes never steer the FSM.
            with m.If(s.pend != 0):
                bit = Signal(max(lg, 1), name=f"bit{l}")
                for q in reversed(range(P)):
                    with m.If(s.pend[q]):
                        m.d.comb += bit.eq(q)
                idx_i = (s.kbase | bit) if lg else s.kbase
                m.d.comb += [s.sl_w.addr.eq(s.ns), s.sl_w.data.eq(idx_i), s.sl_w.en.eq(1)]
                m.d.comb += self._read(f"w{l}").addr.eq(idx_i)
                m.d.sync += [s.w_due[l][0].eq(1), s.ns.eq(s.ns + 1), s.ns_last.eq(s.ns),
                             s.pend.eq(s.pend & (s.pend - 1))]
            with m.Elif(s.k == nw):
                m.d.sync += [s.k.eq(0), s.b.eq(0), s.bbase.eq(0)]
                m.next = f"NRD_{l}"
            with m.Elif(s.sc_v[l] if f"x{l}" in p.single_port else 0):
                pass    # single-port X_l: the last word's traces are written this cycle
            with m.Else():
                if l == 1:
                    m.d.comb += [self.pix_read.addr.eq(s.k), self.vin_read.addr.eq(s.k)]
                    if p.maskable(0):
                        m.d.comb += self.mask0_read.addr.eq(s.k)
                else:
                    m.d.comb += self._read(f"r{l - 1}").addr.eq(s.tbase[l - 1] - nw + s.k)
                m.d.comb += [self._read(f"x{l}").addr.eq(s.tbase[l - 1] - nw + s.k), self._read(f"ever{l}").addr.eq(s.k)]
                m.d.sync += s.rd_word.eq(s.k)
                m.next = f"SCAN_EX_{l}"

        with m.State(f"SCAN_EX_{l}"):
            spikes = Signal(P, name=f"in_spikes{l}")
            if l == 1:
                m.d.comb += [s.enc.pix.eq(self.pix_read.data), s.enc.vin.eq(self.vin_read.data)]
                m.d.comb += [self.vin_write.addr.eq(s.k), self.vin_write.en.eq((1 << P) - 1),
                             self.vin_write.data.eq(s.enc.vin_next)]
                m.d.comb += spikes.eq(s.enc.spike & keep_bits(p, self, 0, self.train, s.rd_word))
            else:
                m.d.comb += spikes.eq(Mux(s.t == 0, 0, self._read(f"r{l - 1}").data))
            m.d.sync += [s.sc_v[l].eq(1), s.sc_k.eq(s.k), s.sc_spk.eq(spikes),
                         s.sc_x.eq(Mux(s.t == 0, 0, self._read(f"x{l}").data)),
                         s.sc_ever.eq(Mux(s.t == 0, 0, self._read(f"ever{l}").data))]
            m.d.sync += [s.pend.eq(spikes), s.kbase.eq(s.k << lg), s.k.eq(s.k + 1)]
            m.next = f"SCAN_RD_{l}"

    def _block_states(self, m, s, l):
        p, cfg = self.params, self.params.cfg
        P, L, T, nbo, nin = p.P, p.L, cfg.time_steps, p.blocks(l), p.sizes[l - 1]
        with m.State(f"SLR_{l}"):
            m.d.sync += s.layer.eq(l)
            m.d.comb += s.sl_r.addr.eq(s.e)
            m.d.sync += [s.sl_v.eq(1), s.e.eq(s.e + 1)]
            with m.If(s.e == s.ns_last):
                m.next = f"DRAIN_{l}"
        with m.State(f"DRAIN_{l}"):
            # the last entry's W read is issued in the cycle of its arrival (sl_v); leaving once it
            # has been in flight for weight_read_latency - 1 cycles, its word reaches acc by
            # NeuronLanes' stage 2
            m.d.sync += s.layer.eq(l)
            with m.If(~Cat(s.sl_v, *s.w_due[l][:-2]).any()):
                m.next = f"NRD_{l}"

        with m.State(f"NRD_{l}"):
            m.d.comb += [self._read(f"v{l}").addr.eq(s.b), self._read(f"c{l}").addr.eq(s.b)]
            if p.maskable(l):
                m.d.comb += self._read(f"mask{l}").addr.eq(s.b)
            m.d.sync += s.rd_blk.eq(s.b)
            m.next = f"NEX_{l}"

        with m.State(f"NEX_{l}"):
            for q in range(P):
                m.d.comb += s.nl.v[q].eq(Mux(s.t == 0, 0, self._read(f"v{l}").data[q]))
            m.d.comb += [s.nl.keep.eq(keep_bits(p, self, l, self.train, s.rd_blk)),
                         s.nl.threshold.eq(Mux(self.train, cfg.train_threshold(l), cfg.theta))]
            m.d.sync += [s.nrn_v[0].eq(1), s.nrn_l[0].eq(l), s.nrn_b[0].eq(s.rd_blk)]
            m.d.sync += [s.nrn_c[0][q].eq(Mux(s.t == 0, 0, self._read(f"c{l}").data[q])) for q in range(P)]
            with m.If(s.b == nbo - 1):
                m.next = f"NDRAIN_{l}"
            with m.Else():
                m.d.sync += [s.b.eq(s.b + 1), s.bbase.eq(s.bbase + nin), s.e.eq(0)]
                with m.If(s.ns != 0):
                    m.next = f"SLR_{l}"
                with m.Else():
                    m.next = f"NRD_{l}"

        # the layer's last block leaves NeuronLanes (its write is this cycle's) before t moves on
        with m.State(f"NDRAIN_{l}"):
            with m.If(~Cat(0, *s.nrn_v[:-1]).any()):
                m.d.sync += [s.b.eq(0), s.bbase.eq(0), s.k.eq(0), s.ns.eq(0)]
                if l < L:
                    m.next = f"SCAN_RD_{l + 1}"
                else:
                    with m.If(s.t == T - 1):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += s.t.eq(s.t + 1)
                        m.d.sync += [tbase.eq(tbase + p.blocks(x)) for x, tbase in s.tbase.items()]
                        m.next = "SCAN_RD_1"

    def _spike_list_stage(self, m, s, l):
        # the replayed entry arrives -> the W_l read of its weight in block b
        with m.If(s.sl_v & (s.layer == l)):
            m.d.comb += self._read(f"w{l}").addr.eq(s.bbase + s.sl_r.data)
            m.d.sync += s.w_due[l][0].eq(1)

    def _scan_stage(self, m, s, l):
        # the word scanned last cycle: its traces and "ever spiked" bits, from registers (the
        # encoder's spikes and a trace update in one cycle after a read are too long). X_l's write
        # port is driven unconditionally (en from the stage's valid bit): a single-port memory
        # addresses with its write enable, which must never be X, and Icarus leaves a comb process
        # X until one of its inputs changes
        P, lg = self.params.P, self.params.lg
        x_write, ever_write = self._write(f"x{l}"), self._write(f"ever{l}")
        m.d.comb += [x_write.addr.eq(s.tbase[l - 1] + s.sc_k), x_write.en.eq(s.sc_v[l]), x_write.data.eq(s.tr.x_next)]
        with m.If(s.sc_v[l]):
            m.d.comb += [s.tr.x.eq(s.sc_x), s.tr.spike.eq(s.sc_spk)]
            m.d.comb += [ever_write.addr.eq(s.sc_k), ever_write.en.eq(1), ever_write.data.eq(s.sc_ever | s.sc_spk)]
            s.emit(DebugKind.SCAN, l, s.t, s.sc_k << lg, value=[s.tr.x_next[q] for q in range(P)],
                   aux=[s.sc_spk[q] for q in range(P)])

    def _neuron_stage(self, m, s, l):
        # NeuronLanes output of block nrn_b: write v, counts and the spike raster of step t
        p = self.params
        P, lg, nl = p.P, p.lg, s.nl
        with m.If(s.nrn_v[-1] & (s.nrn_l[-1] == l)):
            block = s.nrn_b[-1]
            newc = Signal(data.ArrayLayout(unsigned(p.cfg.count_bits), P), name=f"newc{l}")
            for q in range(P):
                m.d.comb += newc[q].eq(s.nrn_c[-1][q] + nl.fire[q])
            v_write, c_write, r_write = self._write(f"v{l}"), self._write(f"c{l}"), self._write(f"r{l}")
            m.d.comb += [v_write.addr.eq(block), v_write.en.eq((1 << P) - 1), v_write.data.eq(nl.v_next),
                         c_write.addr.eq(block), c_write.en.eq((1 << P) - 1), c_write.data.eq(newc),
                         r_write.addr.eq(s.tbase[l] + block), r_write.en.eq(1), r_write.data.eq(nl.fire)]
            s.emit(DebugKind.NEURON, l, s.t, block << lg, value=[nl.v_next[q] for q in range(P)],
                   aux=[Cat(nl.fire[q], newc[q]) for q in range(P)])
