"""Desire-BP on-chip training datapath: one sample at a time, sequential controller, P adder lanes.

Architecture (docs/rtl.md has the long form):
  * every layer l has a weight memory ``W_l`` whose word holds the weights of P post neurons
    (block b = neurons b*P .. b*P+P-1) for one input i, at address b*N_{l-1} + i (block-major),
    so one presynaptic spike fetches one word per post block;
  * forward, per step t and layer l: a scan over the input words updates the traces, collects the
    spiking inputs into a spike list and accumulates block 0 on the fly; blocks 1.. replay the
    list (event-driven: zero spikes cost nothing); then the P neurons of the block decay,
    integrate, saturate, fire and reset (``NeuronLanes``);
  * desire: output desire from the label, then for l = L..2 a pass over the inputs i of layer l
    that reads only blocks with a non-zero g (``DesireLanes``: shift + add/sub/skip);
  * update: per post block with an active neuron, the steps where any active lane spiked are
    listed, then every input's word is read-modified-written with the summed traces
    (``UpdateLanes``: rounding shift, add/sub, saturation).
All memories are ``lib.memory.Memory`` with one synchronous read and one write port (simple
dual-port block RAM). The optional debug stream (``debug=True``) reports every intermediate the
golden trace records; with ``debug=False`` none of that logic exists.
"""

import operator
from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

from ..golden.desire_config import ROUNDING_SALT, DesireConfig
from .memories import WordMemory
from .skeleton import DebugTap, LaneShape, SampleLoader, WeightBank, core_members
from .lanes import (MIX32_STAGES, DesireLanes, EncoderLanes, NeuronLanes, TraceLanes, UpdateLanes,
                    mix32_pipeline)

__all__ = ["CoreParams", "DebugKind", "DesireCore"]


class DebugKind:
    """Record kinds of the debug stream (``kind`` field)."""
    MASK = 1       # aux[k] = keep bit of neuron n+k of ``layer`` (layer 0 = input)
    SCAN = 2       # value[k] = trace of input n+k of ``layer`` at step t; aux[k] = its input spike
    NEURON = 3     # value[k] = v of neuron n+k after step t; aux[k] = spike | count << 1
    DESIRE_OUT = 4  # aux[k] = care | want << 1 of output neuron n+k
    DESIRE_HID = 5  # value[0] = D_n of ``layer``; aux[0] = care | want << 1


def _pow2(n):
    return n >= 1 and n & (n - 1) == 0


@dataclass(frozen=True)
class CoreParams(LaneShape):
    """Hardware shape derived from a golden ``DesireConfig`` plus parallelism and debug."""
    cfg: DesireConfig
    parallelism: int = 1
    debug: bool = False
    #: Weight (``w<l>``) and trace-snapshot (``x<l>``) memories built single-port (``WordMemory``
    #: kind "single", SPRAM on iCE40 UltraPlus); the controller then never reads and writes one of
    #: them in the same cycle, at the cost of a stall cycle where it would.
    single_port: frozenset = frozenset()

    def __post_init__(self):
        p = operator.index(self.parallelism)
        if not _pow2(p) or p > 256:
            raise ValueError(f"parallelism must be a power of two in 1..256, not {self.parallelism!r}")
        if self.cfg.time_steps > 255:
            raise ValueError("time_steps must be <= 255")
        if isinstance(self.single_port, str):
            raise TypeError(f"single_port must be a collection of memory names, not the string {self.single_port!r}")
        object.__setattr__(self, "single_port", frozenset(self.single_port))
        unknown = sorted(self.single_port - set(self.single_port_candidates))
        if unknown:
            raise ValueError(f"single_port names unknown memories {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(self.single_port_candidates)}")

    @property
    def single_port_candidates(self):
        """Memories that may be single-port: the weights and trace snapshots of every layer."""
        return tuple(f"{kind}{l}" for kind in "wx" for l in range(1, len(self.cfg.topology)))

    @property
    def sizes(self):
        return tuple(self.cfg.topology)

    def w_depth(self, layer):
        return self.blocks(layer) * self.sizes[layer - 1]

    def acc_bits(self, layer):
        return self.cfg.weight_bits + self.sizes[layer - 1].bit_length() + 1

    def desire_bits(self, layer):
        return self.cfg.desire_bits(layer) + 2

    @property
    def lane_acc_bits(self):
        """Accumulator width of the NeuronLanes all layers share."""
        return max(self.acc_bits(l) for l in range(1, self.L + 1))

    @property
    def lane_desire_bits(self):
        """Sum width of the DesireLanes all hidden layers share."""
        return max(self.desire_bits(l) for l in range(2, self.L + 1))

    def maskable(self, layer):
        return layer < self.L and self.cfg.keep_threshold(layer) < 1 << 16

    @property
    def accum_bits(self):
        return self.cfg.trace_bits + self.cfg.time_steps.bit_length()

    @property
    def max_left_shift(self):
        return max(0, -self.cfg.update_shift(0))

    @property
    def debug_lanes(self):
        return max(self.P, 1)

    @property
    def debug_value_bits(self):
        widths = [self.cfg.membrane_bits, self.cfg.trace_bits + 1]
        widths += [self.desire_bits(l) for l in range(2, self.L + 1)]
        return max(widths)

    @property
    def debug_aux_bits(self):
        return self.cfg.count_bits + 1

    @property
    def addr_bits(self):
        return max(ceil_log2(max(self.w_depth(l) for l in range(1, self.L + 1))), 1)

    @property
    def label_layout(self):
        return data.StructLayout({
            "label": unsigned(max(ceil_log2(self.sizes[-1]), 1)),
            "train": 1,
            "step": unsigned(32),
            "shift": signed(8),
        })

    @property
    def result_layout(self):
        n = self.sizes[-1]
        return data.StructLayout({
            "pred": unsigned(max(ceil_log2(n), 1)),
            "tie": 1,
            "counts": data.ArrayLayout(unsigned(self.cfg.count_bits), n),
            "cycles": unsigned(32),
        })

    @property
    def debug_layout(self):
        return data.StructLayout({
            "kind": unsigned(4),
            "layer": unsigned(4),
            "t": unsigned(8),
            "n": unsigned(16),
            "value": data.ArrayLayout(signed(self.debug_value_bits), self.debug_lanes),
            "aux": data.ArrayLayout(unsigned(self.debug_aux_bits), self.debug_lanes),
        })


class DesireCore(wiring.Component):
    """Desire-BP training/inference core for ``params.cfg.topology`` with ``params.P`` lanes.

    Ports:
      * ``pixels``: stream of N0 pixels (uint8) per sample, in input order;
      * ``labels``: one beat per sample: label, train (1 = train, 0 = inference), step (the
        global training-sample counter q of the dropout/rounding hashes), shift (update shift SH);
      * ``results``: one beat per sample: pred (first index of the max count), tie, output counts,
        cycles (from start of processing to the result, excluding pixel loading);
      * ``wport``: weight load/read-back (only while ``busy`` is low);
      * ``cycles``: free-running cycle counter; ``busy``: a sample is being processed;
      * ``debug`` (only when ``params.debug``): valid/payload trace records, no backpressure.
    """

    def __init__(self, params: CoreParams):
        self.params = params
        super().__init__(core_members(params))

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        p = self.params
        cfg = p.cfg
        P, lg, L, N = p.P, p.lg, p.L, p.sizes
        T = cfg.time_steps
        WB, VB, TB, CB = cfg.weight_bits, cfg.membrane_bits, cfg.trace_bits, cfg.count_bits
        m = Module()

        def lanes_of(shape):
            return data.ArrayLayout(shape, P)

        def valid_lanes(layer, word):
            """Constant bit mask of lanes of ``word`` (a Value) holding real neurons of ``layer``."""
            nb, rem = p.blocks(layer), N[layer] % P
            full = (1 << P) - 1
            if rem == 0:
                return Const(full, P)
            return Mux(word == nb - 1, Const((1 << rem) - 1, P), Const(full, P))

        # ---------------- memories ----------------
        # On iCE40 every state memory goes into block RAM (EBR): in logic, Yosys' choice for the small
        # ones, a read is a wide multiplexer behind the controller's address decode, the UP5K's
        # longest path. Elsewhere Yosys chooses (ECP5: LUT RAM for the small ones).
        memory_attrs = {"ram_style": "block"} if str(getattr(platform, "device", "")).startswith("iCE40") else {}

        def memory(name, shape, depth):
            mem = Memory(shape=shape, depth=max(depth, 2), init=[], attrs=memory_attrs)
            m.submodules[name] = mem
            return mem, mem.read_port(), mem.write_port(granularity=1 if isinstance(shape, data.ArrayLayout) else None)

        def word_memory(name, shape, depth):
            """A ``WordMemory`` (whole-word writes), single-port if ``params.single_port`` names it."""
            mem = WordMemory(shape=shape, depth=max(depth, 2), kind="single" if name in p.single_port else "dual")
            m.submodules[name] = mem
            return mem, mem.read, mem.write

        # sample input and the weight memories with the host's port: the parts every rule's core shares
        loader = m.submodules.loader = SampleLoader(pixel_count=N[0], label_layout=p.label_layout)
        wiring.connect(m, wiring.flipped(self.pixels), loader.pixels)
        wiring.connect(m, wiring.flipped(self.labels), loader.labels)
        label, train, step, shift = loader.label.label, loader.label.train, loader.label.step, loader.label.shift
        bank = m.submodules.weights = WeightBank(
            word_shape=lanes_of(signed(WB)),
            memories=[(p.w_depth(l), f"w{l}" in p.single_port) for l in range(1, L + 1)])
        wiring.connect(m, wiring.flipped(self.wport), bank.wport)

        pix_mem, pix_r, pix_w = memory("pix", lanes_of(unsigned(8)), p.blocks(0))
        enc = EncoderLanes(P, pixel_max=cfg.pixel_max)
        m.submodules.enc = enc
        vin_mem, vin_r, vin_w = memory("vin", lanes_of(unsigned(enc.vin_bits)), p.blocks(0))
        maxn_in = max(N[:-1])
        sl_mem = Memory(shape=unsigned(max(ceil_log2(maxn_in), 1)), depth=max(maxn_in, 2), init=[])
        m.submodules.spike_list = sl_mem
        sl_r, sl_w = sl_mem.read_port(), sl_mem.write_port()
        maxnb = max(p.blocks(l) for l in range(1, L + 1))
        al_layout = data.StructLayout({"b": unsigned(max(ceil_log2(maxnb), 1)), "base": unsigned(p.addr_bits)})
        al_mem = Memory(shape=al_layout, depth=max(maxnb, 2), init=[])
        m.submodules.block_list = al_mem
        al_r, al_w = al_mem.read_port(), al_mem.write_port()

        W, V, C, R, X, CARE, WANT, MASK, EVER = {}, {}, {}, {}, {}, {}, {}, {}, {}
        for l in range(1, L + 1):
            W[l] = (None, bank.reads[l - 1], bank.writes[l - 1])
            V[l] = memory(f"v{l}", lanes_of(signed(VB)), p.blocks(l))
            C[l] = memory(f"c{l}", lanes_of(unsigned(CB)), p.blocks(l))
            R[l] = memory(f"r{l}", unsigned(P), T * p.blocks(l))
            X[l] = word_memory(f"x{l}", lanes_of(unsigned(TB)), T * p.blocks(l - 1))
            CARE[l] = memory(f"care{l}", unsigned(P), p.blocks(l))
            # inputs of layer l that spiked at least once this sample (their trace is never 0 after)
            EVER[l] = memory(f"ever{l}", unsigned(P), p.blocks(l - 1))
            WANT[l] = memory(f"want{l}", unsigned(P), p.blocks(l))
        for l in range(0, L):
            if p.maskable(l):
                MASK[l] = memory(f"mask{l}", unsigned(P), p.blocks(l))

        # ---------------- lane datapaths ----------------
        # One instance of each, shared by every layer: the phases run one layer at a time and each
        # drains its lane pipeline before the next layer starts, so area does not grow with depth.
        # Widths are the widest layer's (the values are exact sums, a wider lane changes no bit).
        tr = m.submodules.trace = TraceLanes(P, trace_bits=TB, decay_shift=cfg.decay_shift,
                                             frac_bits=cfg.trace_frac_bits)
        nl = m.submodules.neuron = NeuronLanes(P, membrane_bits=VB, acc_bits=p.lane_acc_bits,
                                               decay_shift=cfg.decay_shift, threshold_bits=VB)
        ul = m.submodules.update = UpdateLanes(P, weight_bits=WB, accum_bits=p.accum_bits,
                                               max_left_shift=p.max_left_shift,
                                               stochastic=cfg.rounding == "stochastic")
        if L >= 2:
            dl = m.submodules.desire = DesireLanes(P, weight_bits=WB, count_bits=CB, target_count=cfg.target_count,
                                                   error_mode=cfg.error_mode, sum_bits=p.lane_desire_bits)

        # ---------------- registers ----------------
        cyc = Signal(32)
        m.d.sync += cyc.eq(cyc + 1)
        m.d.comb += self.cycles.eq(cyc)
        sample_cycles = Signal(32)


        t = Signal(range(T + 1))
        tbase = {x: Signal(max(ceil_log2(T * p.blocks(x)), 1), name=f"tbase{x}") for x in range(0, L + 1)}
        k = Signal(range(max([p.blocks(x) for x in range(L + 1)] + [len(MIX32_STAGES)]) + 1))  # MASK_KEY counts too
        b = Signal(range(maxnb + 1))
        bbase = Signal(p.addr_bits + 1)
        ns = Signal(range(maxn_in + 1))        # spikes in the list
        ns_last = Signal.like(ns)               # ns - 1, kept beside it (SLR's last-entry test is an equality)
        e = Signal(range(max(maxn_in, maxnb, T) + 1))
        pend = Signal(P)
        kbase = Signal(max(ceil_log2(maxn_in), 1) + 1)
        acc = Signal(data.ArrayLayout(signed(p.lane_acc_bits), P))
        acc_en = {l: Signal(name=f"acc_en{l}") for l in range(1, L + 1)}
        sl_v = Signal()
        k1 = Signal(32)
        skey = Signal(32)
        i = Signal(range(maxn_in + 1))
        j = Signal(range(N[-1] + 1))

        # dropout/rounding hashes: mix32 split over mix_lat registers (six carry chains in one cycle
        # would set the clock). One bank of P pipelines serves the step keys (lane 0, MASK_KEY), the
        # dropout masks (MASK_l) and the stochastic rounding offsets (UI): those phases never overlap,
        # and each drives the inputs from its own state.
        mix_lat = len(MIX32_STAGES) - 1
        stochastic = cfg.rounding == "stochastic"
        # With stochastic rounding an update word needs P offsets at once, so there are P lanes;
        # otherwise only the keys and the masks use them, and one lane hashes one neuron per cycle
        # (a mask word takes P cycles, a few dozen per sample): one mix32 pipeline instead of P.
        hash_lanes = P if stochastic else 1
        hash_in = Signal(data.ArrayLayout(unsigned(32), hash_lanes))
        hash_out = [mix32_pipeline(m, hash_in[q], f"hash{q}") for q in range(hash_lanes)]
        mask_layers = sorted(MASK)
        mk_sub = Signal(max(lg, 1))        # one-lane hashing: the lane of word k entering this cycle
        mk_word = Signal(P)                 # one-lane hashing: the word's keep bits gathered so far
        mk_v = [Signal(name=f"mk_v{n}") for n in range(mix_lat)]
        mk_k = [Signal.like(k, name=f"mk_k{n}") for n in range(mix_lat)]
        mk_l = [Signal(range(max(len(mask_layers), 2)), name=f"mk_l{n}") for n in range(mix_lat)]
        mk_s = [Signal.like(mk_sub, name=f"mk_s{n}") for n in range(mix_lat)]
        m.d.sync += mk_v[0].eq(0)
        for n in range(1, mix_lat):
            m.d.sync += [mk_v[n].eq(mk_v[n - 1]), mk_k[n].eq(mk_k[n - 1]), mk_l[n].eq(mk_l[n - 1]),
                         mk_s[n].eq(mk_s[n - 1])]
        one_lane_masks = hash_lanes < P

        res_counts = Signal(data.ArrayLayout(unsigned(CB), N[-1]))
        best = Signal(CB)
        pred = Signal(self.results.payload.pred.shape())
        tie = Signal()

        # desire pipeline
        nact = Signal(range(maxnb + 1))
        # nact - 1 kept beside nact (the index of the last list entry), so H's per-entry "last" test
        # is an equality, not a subtraction in front of it (the UP5K's longest path)
        nact_last = Signal.like(nact)
        h1_v, h1_last, h1_zero, h1_i = Signal(), Signal(), Signal(), Signal(range(maxn_in + 1))
        h2_v, h2_last, h2_zero, h2_i = Signal(), Signal(), Signal(), Signal(range(maxn_in + 1))
        # the stage-2 control delayed along the DesireLanes pipeline (same latency for every layer)
        dlat = dl.latency if L >= 2 else 0
        # cycles until H may issue the next block-list entry (DesireLanes takes one per interval)
        h_gap = Signal(range(max(dl.interval if L >= 2 else 1, 2)))
        hp_v = [Signal(name=f"hp_v{n}") for n in range(dlat)]
        hp_last = [Signal(name=f"hp_last{n}") for n in range(dlat)]
        hp_zero = [Signal(name=f"hp_zero{n}") for n in range(dlat)]
        hp_i = [Signal(range(maxn_in + 1), name=f"hp_i{n}") for n in range(dlat)]
        for n in range(1, dlat):
            m.d.sync += [hp_v[n].eq(hp_v[n - 1]), hp_last[n].eq(hp_last[n - 1]), hp_zero[n].eq(hp_zero[n - 1]),
                         hp_i[n].eq(hp_i[n - 1])]
        dacc = Signal(signed(max([p.desire_bits(l) for l in range(2, L + 1)] + [2])))
        fin_v, fin_sum, fin_i = Signal(), Signal.like(dacc), Signal(range(maxn_in + 1))
        m.d.sync += fin_v.eq(0)
        care_word, want_word = Signal(P), Signal(P)

        # update
        act, want_bits = Signal(P), Signal(P)
        tt = Signal(range(T + 1))
        rtb = Signal(max(ceil_log2(T * maxnb), 1) + 1)
        xtb = Signal(max(ceil_log2(T * max(p.blocks(x) for x in range(L + 1))), 1) + 1)
        ut1_v = Signal()
        ut1_xtb = Signal.like(xtb)
        nt = Signal(range(T + 1))
        # The steps at which an active lane of the post block spiked (<= T entries: the X base address
        # of the step and the lanes' raster bits), in a small memory rather than T registers: UT
        # writes them in order, UI reads entry e (issued a cycle ahead) for every visited input.
        step_list = Memory(shape=data.StructLayout({"x": xtb.shape(), "r": unsigned(P)}), depth=max(T, 2), init=[])
        m.submodules.step_list = step_list
        st_r, st_w = step_list.read_port(), step_list.write_port()
        u1_v, u1_last, u1_rbits, u1_lane, u1_i = Signal(), Signal(), Signal(P), Signal(max(lg, 1)), Signal(range(maxn_in + 1))
        accum = Signal(data.ArrayLayout(unsigned(p.accum_bits), P))
        # weight-word write address delayed along the UpdateLanes pipeline (same latency for every layer)
        ulat = ul.latency
        uw_v = [Signal(name=f"uw_v{n}") for n in range(ulat)]
        uw_addr = [Signal(p.addr_bits, name=f"uw_addr{n}") for n in range(ulat)]
        m.d.sync += uw_v[0].eq(0)
        # the trace word of u1, lane-selected and registered before the accumulate (u2)
        u2_v, u2_last, u2_rbits, u2_i = Signal(), Signal(), Signal(P), Signal(range(maxn_in + 1))
        u2_x = Signal(unsigned(TB))
        u2_w = Signal(lanes_of(signed(WB)))
        # stochastic rounding offsets, hashed from the synapse index issued in UI; due at UpdateLanes'
        # stage 2, three cycles after UI (u1 data arrival, u2 accumulate, stage 1)
        if stochastic:
            offset_pad = 3 - mix_lat
            if offset_pad < 0:
                raise ValueError(f"the rounding hash takes {mix_lat} cycles; UpdateLanes needs it after 3")
            uo_offset = hash_out
            for n in range(offset_pad):
                delayed = [Signal(32, name=f"round{q}_pad{n}") for q in range(P)]
                m.d.sync += [delayed[q].eq(uo_offset[q]) for q in range(P)]
                uo_offset = delayed
        for n in range(1, ulat):
            m.d.sync += [uw_v[n].eq(uw_v[n - 1]), uw_addr[n].eq(uw_addr[n - 1])]

        emit = DebugTap(m, self.debug if p.debug else None).emit

        # NEX control delayed along each layer's NeuronLanes pipeline: valid, block, the counts read
        # NEX control delayed along the NeuronLanes pipeline: valid, layer, block, the counts read
        nrn_v = [Signal(name=f"nrn_v{n}") for n in range(nl.latency)]
        nrn_l = [Signal(range(L + 1), name=f"nrn_l{n}") for n in range(nl.latency)]
        nrn_b = [Signal.like(b, name=f"nrn_b{n}") for n in range(nl.latency)]
        nrn_c = [Signal(lanes_of(unsigned(CB)), name=f"nrn_c{n}") for n in range(nl.latency)]
        m.d.sync += nrn_v[0].eq(0)
        for n in range(1, nl.latency):
            m.d.sync += [nrn_v[n].eq(nrn_v[n - 1]), nrn_l[n].eq(nrn_l[n - 1]), nrn_b[n].eq(nrn_b[n - 1]),
                         nrn_c[n].eq(nrn_c[n - 1])]

        # scan write stage: SCAN_EX's word, one cycle later
        sc_v = {l: Signal(name=f"sc_v{l}") for l in range(1, L + 1)}
        sc_k = Signal.like(k)
        sc_spk, sc_ever = Signal(P), Signal(P)
        sc_x = Signal(lanes_of(unsigned(TB)))
        m.d.sync += [v.eq(0) for v in sc_v.values()]

        # ---------------- shared data-arrival stages (one cycle after a read was issued) ----------------
        # forward accumulation: ACC += W_l word, from a register (a large W is many block RAMs behind
        # an output multiplexer; that and a carry chain do not fit one cycle)
        acc_word = Signal(lanes_of(signed(WB)))
        acc_add = Signal()
        for l in range(1, L + 1):
            with m.If(acc_en[l]):
                m.d.sync += acc_word.eq(W[l][1].data)
        m.d.sync += acc_add.eq(Cat(*acc_en.values()).any())
        with m.If(acc_add):
            m.d.sync += [acc[q].eq(acc[q] + acc_word[q]) for q in range(P)]
        m.d.sync += [acc_en[l].eq(0) for l in acc_en]
        # NeuronLanes takes acc one cycle after NEX (its stage 2), when the block's last word is
        # in; the next block's first word arrives three cycles later at the earliest
        m.d.comb += [nl.acc[q].eq(acc[q]) for q in range(P)]
        with m.If(nrn_v[0]):
            m.d.sync += [acc[q].eq(0) for q in range(P)]
        m.d.sync += [sl_v.eq(0), h1_v.eq(0), h2_v.eq(0), ut1_v.eq(0), u1_v.eq(0), u2_v.eq(0)]
        m.d.sync += [v.eq(0) for v in hp_v[:1]]

        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        m.d.comb += self.results.payload.counts.eq(res_counts)
        m.d.comb += [self.results.payload.pred.eq(pred), self.results.payload.tie.eq(tie),
                     self.results.payload.cycles.eq(sample_cycles)]
        with m.If(busy):
            m.d.sync += sample_cycles.eq(sample_cycles + 1)

        th = {l: Mux(train, cfg.train_threshold(l), cfg.theta) for l in range(1, L + 1)}

        def mask_word(layer, word_value):
            """Keep bits of ``layer``'s word: the mask memory (training) or all real lanes (eval)."""
            if layer in MASK:
                return Mux(train, MASK[layer][1].data, valid_lanes(layer, word_value)) & valid_lanes(layer, word_value)
            return valid_lanes(layer, word_value)

        def start_forward():
            stmts = [t.eq(0), k.eq(0), b.eq(0), bbase.eq(0), ns.eq(0), pend.eq(0)]   # SCAN_RD starts with no spikes
            stmts += [tbase[x].eq(0) for x in tbase]
            return stmts

        # word index registers for read stages
        rd_word = Signal.like(k)   # word whose mask/valid lanes are being read (for valid_lanes)
        rd_blk = Signal.like(b)

        # host weight port: whenever no sample is being processed (the FSM leaves W alone then)
        m.d.comb += bank.host_enable.eq(~busy)

        stages = []   # data-arrival pipeline stages, elaborated after the FSM
        cur_l = Signal(range(L + 1))  # layer of the read issued last cycle (selects the stage)

        # spike-list replay: the entry's weight address of block b, registered (the list's block RAM
        # clock-to-out, the add and the route to the weight memory's address were ECP5's longest path)
        sl_fetch_v = Signal()
        sl_fetch_addr = Signal(p.addr_bits + 1)
        m.d.sync += sl_fetch_v.eq(0)

        def spike_list_stage(l):
            with m.If(sl_v & (cur_l == l)):
                m.d.sync += [sl_fetch_v.eq(1), sl_fetch_addr.eq(bbase + sl_r.data)]
            with m.If(sl_fetch_v & (cur_l == l)):
                m.d.comb += W[l][1].addr.eq(sl_fetch_addr)
                m.d.sync += acc_en[l].eq(1)
        for l in range(1, L + 1):
            stages.append(lambda l=l: spike_list_stage(l))

        with m.FSM(name="ctrl"):
            # One cycle after reset, so the state register changes once: Icarus evaluates an
            # `always @*` block only when one of its inputs changes, and outputs decoded from a
            # never-changing state would read X.
            with m.State("START"):
                m.next = "IDLE"
            # ======================= IDLE: load pixels and label; host weight port ==============
            with m.State("IDLE"):
                m.d.comb += loader.idle.eq(1)
                with m.If(loader.pixel.valid):
                    index = loader.pixel.index
                    m.d.comb += [pix_w.addr.eq(index >> lg), vin_w.addr.eq(index >> lg)]
                    m.d.comb += [pix_w.en.eq(1 << index[:lg] if lg else 1), vin_w.en.eq(1 << index[:lg] if lg else 1)]
                    m.d.comb += [pix_w.data[q].eq(loader.pixel.value) for q in range(P)]
                    m.d.comb += [vin_w.data[q].eq(0) for q in range(P)]
                with m.If(loader.start):
                    m.d.sync += [busy.eq(1), sample_cycles.eq(0)]
                    m.d.sync += start_forward()
                    m.next = "MASK_KEY"

            # ======================= dropout masks ==============================================
            with m.State("MASK_KEY"):
                # step is stable from here on: the dropout key enters lane 0 at k = 0, the rounding
                # key (stochastic rounding only) at k = 1; each is out mix_lat cycles later
                m.d.comb += hash_in[0].eq(Mux(k == 0, Const(cfg.seed, 32) ^ step,
                                              Const(cfg.seed ^ ROUNDING_SALT, 32) ^ step))
                with m.If(k == mix_lat):
                    m.d.sync += k1.eq(hash_out[0])
                if stochastic:
                    with m.If(k == mix_lat + 1):
                        m.d.sync += skey.eq(hash_out[0])
                with m.If(k == mix_lat + stochastic):
                    m.d.sync += k.eq(0)
                    m.next = f"MASK_{mask_layers[0]}" if mask_layers else "SCAN_RD_1"
                    if mask_layers:
                        with m.If(~train):
                            m.next = "SCAN_RD_1"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
            for idx, ml in enumerate(mask_layers):
                with m.State(f"MASK_{ml}"):
                    # word k (one-lane hashing: its lane mk_sub) enters the hash pipeline; the mask
                    # stage writes the word mix_lat cycles after its last lane
                    for q in range(hash_lanes):
                        lane = mk_sub[:lg] if one_lane_masks else Const(q, lg)
                        n = Cat(lane, k) if lg else k
                        m.d.comb += hash_in[q].eq(k1 ^ (ml << 16) ^ n)
                    m.d.sync += [mk_v[0].eq(1), mk_k[0].eq(k), mk_l[0].eq(idx), mk_s[0].eq(mk_sub)]
                    word_done = (mk_sub == P - 1) if one_lane_masks else Const(1)
                    with m.If(~word_done):
                        m.d.sync += mk_sub.eq(mk_sub + 1)
                    with m.Elif(k == p.blocks(ml) - 1):
                        m.d.sync += [k.eq(0), mk_sub.eq(0)]
                        m.next = f"MASK_{mask_layers[idx + 1]}" if idx + 1 < len(mask_layers) else "MASK_DRAIN"
                    with m.Else():
                        m.d.sync += [k.eq(k + 1), mk_sub.eq(0)]
            with m.State("MASK_DRAIN"):
                # the last mask word is written in this cycle at the latest (the forward pass reads it)
                with m.If(~Cat(0, *mk_v[:-1]).any()):
                    m.next = "SCAN_RD_1"

            def _mask_stage():
                # hashes left the pipeline -> keep bits; a complete word into its layer's mask memory
                with m.If(mk_v[-1]):
                    for idx, ml in enumerate(mask_layers):
                        with m.If(mk_l[-1] == idx):
                            bits = [(hash_out[q] >> 16)[:16] < cfg.keep_threshold(ml) for q in range(hash_lanes)]
                            if one_lane_masks:
                                gathered = mk_word | (bits[0] << mk_s[-1][:lg])[:P]
                                done = mk_s[-1] == P - 1
                            else:
                                gathered, done = Cat(*bits), Const(1)
                            with m.If(done):
                                word = gathered & valid_lanes(ml, mk_k[-1])
                                m.d.comb += [MASK[ml][2].addr.eq(mk_k[-1]), MASK[ml][2].data.eq(word),
                                             MASK[ml][2].en.eq(1)]
                                emit(DebugKind.MASK, ml, 0, mk_k[-1] << lg, aux=[word[q] for q in range(P)])
                                m.d.sync += mk_word.eq(0)
                            with m.Else():
                                m.d.sync += mk_word.eq(gathered)
            stages.append(_mask_stage)

            # ======================= forward ====================================================
            for l in range(1, L + 1):
                nw, nbo, nin = p.blocks(l - 1), p.blocks(l), N[l - 1]
                Wr = W[l][1]

                with m.State(f"SCAN_RD_{l}"):
                    # the spiking inputs of the word scanned last (pend, registered by SCAN_EX) enter
                    # the spike list one per cycle, and block 0 fetches their weights; only then is the
                    # next word read. SCAN_EX's combinational spikes never steer the FSM.
                    with m.If(pend != 0):
                        bit = Signal(max(lg, 1), name=f"bit{l}")
                        for q in reversed(range(P)):
                            with m.If(pend[q]):
                                m.d.comb += bit.eq(q)
                        idx_i = (kbase | bit) if lg else kbase
                        m.d.comb += [sl_w.addr.eq(ns), sl_w.data.eq(idx_i), sl_w.en.eq(1)]
                        m.d.comb += Wr.addr.eq(idx_i)
                        m.d.sync += [acc_en[l].eq(1), ns.eq(ns + 1), ns_last.eq(ns), pend.eq(pend & (pend - 1))]
                    with m.Elif(k == nw):
                        m.d.sync += [k.eq(0), b.eq(0), bbase.eq(0)]
                        m.next = f"NRD_{l}"
                    with m.Elif(sc_v[l] if f"x{l}" in p.single_port else 0):
                        pass    # single-port X_l: the last word's traces are written this cycle
                    with m.Else():
                        if l == 1:
                            m.d.comb += [pix_r.addr.eq(k), vin_r.addr.eq(k)]
                            if 0 in MASK:
                                m.d.comb += MASK[0][1].addr.eq(k)
                        else:
                            m.d.comb += R[l - 1][1].addr.eq(tbase[l - 1] - nw + k)
                        m.d.comb += [X[l][1].addr.eq(tbase[l - 1] - nw + k), EVER[l][1].addr.eq(k)]
                        m.d.sync += rd_word.eq(k)
                        m.next = f"SCAN_EX_{l}"

                with m.State(f"SCAN_EX_{l}"):
                    spikes = Signal(P, name=f"in_spikes{l}")
                    if l == 1:
                        m.d.comb += [enc.pix.eq(pix_r.data), enc.vin.eq(vin_r.data)]
                        m.d.comb += [vin_w.addr.eq(k), vin_w.en.eq((1 << P) - 1), vin_w.data.eq(enc.vin_next)]
                        m.d.comb += spikes.eq(enc.spike & mask_word(0, rd_word))
                    else:
                        m.d.comb += spikes.eq(Mux(t == 0, 0, R[l - 1][1].data))
                    m.d.sync += [sc_v[l].eq(1), sc_k.eq(k), sc_spk.eq(spikes), sc_x.eq(Mux(t == 0, 0, X[l][1].data)),
                                 sc_ever.eq(Mux(t == 0, 0, EVER[l][1].data))]
                    m.d.sync += [pend.eq(spikes), kbase.eq(k << lg), k.eq(k + 1)]
                    m.next = f"SCAN_RD_{l}"

                def _scan_stage(l=l):
                    # the word scanned last cycle: its traces and "ever spiked" bits, from registers
                    # (the encoder's spikes and a trace update in one cycle after a read are too long)
                    # X_l's write port unconditionally (en from the stage's valid bit): a single-port
                    # memory addresses with its write enable, which must never be X, and Icarus leaves
                    # a comb process X until one of its inputs changes
                    m.d.comb += [X[l][2].addr.eq(tbase[l - 1] + sc_k), X[l][2].en.eq(sc_v[l]),
                                 X[l][2].data.eq(tr.x_next)]
                    with m.If(sc_v[l]):
                        m.d.comb += [tr.x.eq(sc_x), tr.spike.eq(sc_spk)]
                        m.d.comb += [EVER[l][2].addr.eq(sc_k), EVER[l][2].en.eq(1),
                                     EVER[l][2].data.eq(sc_ever | sc_spk)]
                        emit(DebugKind.SCAN, l, t, sc_k << lg, value=[tr.x_next[q] for q in range(P)],
                             aux=[sc_spk[q] for q in range(P)])
                stages.append(_scan_stage)

                with m.State(f"SLR_{l}"):
                    m.d.sync += cur_l.eq(l)
                    m.d.comb += sl_r.addr.eq(e)
                    m.d.sync += [sl_v.eq(1), e.eq(e + 1)]
                    with m.If(e == ns_last):
                        m.next = f"DRAIN_{l}"
                with m.State(f"DRAIN_{l}"):
                    # the last entry's fetch is issued (from sl_fetch_addr) in the cycle after its
                    # arrival; its word reaches acc by NeuronLanes' stage 2
                    m.d.sync += cur_l.eq(l)
                    with m.If(~sl_v):
                        m.next = f"NRD_{l}"

                with m.State(f"NRD_{l}"):
                    m.d.comb += [V[l][1].addr.eq(b), C[l][1].addr.eq(b)]
                    if l in MASK:
                        m.d.comb += MASK[l][1].addr.eq(b)
                    m.d.sync += rd_blk.eq(b)
                    m.next = f"NEX_{l}"

                with m.State(f"NEX_{l}"):
                    for q in range(P):
                        m.d.comb += nl.v[q].eq(Mux(t == 0, 0, V[l][1].data[q]))
                    m.d.comb += [nl.keep.eq(mask_word(l, rd_blk)), nl.threshold.eq(th[l])]
                    m.d.sync += [nrn_v[0].eq(1), nrn_l[0].eq(l), nrn_b[0].eq(rd_blk)]
                    m.d.sync += [nrn_c[0][q].eq(Mux(t == 0, 0, C[l][1].data[q])) for q in range(P)]
                    with m.If(b == nbo - 1):
                        m.next = f"NDRAIN_{l}"
                    with m.Else():
                        m.d.sync += [b.eq(b + 1), bbase.eq(bbase + nin), e.eq(0)]
                        with m.If(ns != 0):
                            m.next = f"SLR_{l}"
                        with m.Else():
                            m.next = f"NRD_{l}"

                # the layer's last block leaves NeuronLanes (its write is this cycle's) before t moves on
                with m.State(f"NDRAIN_{l}"):
                    with m.If(~Cat(0, *nrn_v[:-1]).any()):
                        m.d.sync += [b.eq(0), bbase.eq(0), k.eq(0), ns.eq(0)]
                        if l < L:
                            m.next = f"SCAN_RD_{l + 1}"
                        else:
                            with m.If(t == T - 1):
                                m.d.sync += j.eq(0)
                                m.next = "RES_RD"
                            with m.Else():
                                m.d.sync += t.eq(t + 1)
                                m.d.sync += [tbase[x].eq(tbase[x] + p.blocks(x)) for x in tbase]
                                m.next = "SCAN_RD_1"

                def _neuron_stage(l=l):
                    # NeuronLanes output of block nrn_b: write v, counts and the spike raster of step t
                    with m.If(nrn_v[-1] & (nrn_l[-1] == l)):
                        nb_out = nrn_b[-1]
                        newc = Signal(lanes_of(unsigned(CB)), name=f"newc{l}")
                        for q in range(P):
                            m.d.comb += newc[q].eq(nrn_c[-1][q] + nl.fire[q])
                        m.d.comb += [V[l][2].addr.eq(nb_out), V[l][2].en.eq((1 << P) - 1), V[l][2].data.eq(nl.v_next),
                                     C[l][2].addr.eq(nb_out), C[l][2].en.eq((1 << P) - 1), C[l][2].data.eq(newc),
                                     R[l][2].addr.eq(tbase[l] + nb_out), R[l][2].en.eq(1), R[l][2].data.eq(nl.fire)]
                        emit(DebugKind.NEURON, l, t, nb_out << lg, value=[nl.v_next[q] for q in range(P)],
                             aux=[Cat(nl.fire[q], newc[q]) for q in range(P)])
                stages.append(_neuron_stage)


            # ======================= result: argmax of output counts ==============================
            with m.State("RES_RD"):
                m.d.comb += C[L][1].addr.eq(j >> lg)
                m.next = "RES_EX"
            with m.State("RES_EX"):
                # a mux over lanes: indexing the View by a Value would multiply the index by the lane width
                cnt = Array(C[L][1].data[q] for q in range(P))[j[:lg]] if lg else C[L][1].data[0]
                m.d.sync += Array(res_counts[q] for q in range(N[-1]))[j].eq(cnt)
                with m.If((j == 0) | (cnt > best)):
                    m.d.sync += [best.eq(cnt), pred.eq(j), tie.eq(0)]
                with m.Elif(cnt == best):
                    m.d.sync += tie.eq(1)
                with m.If(j == N[-1] - 1):
                    m.d.sync += b.eq(0)
                    with m.If(train):
                        m.next = "DO_RD"
                    with m.Else():
                        m.next = "OUT"
                with m.Else():
                    m.d.sync += j.eq(j + 1)
                    m.next = "RES_RD"

            # ======================= output desire =================================================
            with m.State("DO_RD"):
                m.d.comb += C[L][1].addr.eq(b)
                m.d.sync += rd_blk.eq(b)
                m.next = "DO_EX"
            with m.State("DO_EX"):
                care_bits, want_bits_o = [], []
                for q in range(P):
                    jj = Cat(Const(q, lg), rd_blk) if lg else rd_blk
                    c = C[L][1].data[q]
                    w_on = (jj == label)
                    care_bits.append(Mux(w_on, c < cfg.target_count - cfg.k_out, c > cfg.k_out))
                    want_bits_o.append(w_on)
                vl = valid_lanes(L, rd_blk)
                cw, ww = Cat(*care_bits) & vl, Cat(*want_bits_o) & vl
                m.d.comb += [CARE[L][2].addr.eq(rd_blk), CARE[L][2].data.eq(cw), CARE[L][2].en.eq(1),
                             WANT[L][2].addr.eq(rd_blk), WANT[L][2].data.eq(ww), WANT[L][2].en.eq(1)]
                emit(DebugKind.DESIRE_OUT, L, 0, rd_blk << lg, aux=[Cat(cw[q], ww[q]) for q in range(P)])
                with m.If(rd_blk == p.blocks(L) - 1):
                    m.d.sync += [b.eq(0), bbase.eq(0), nact.eq(0)]
                    m.next = f"G_RD_{L}" if L >= 2 else "U_RD_1"
                with m.Else():
                    m.d.sync += b.eq(b + 1)
                    m.next = "DO_RD"

            # ======================= hidden desire, l = L .. 2 ====================================
            for l in range(L, 1, -1):
                nin, nbo = N[l - 1], p.blocks(l)
                with m.State(f"G_RD_{l}"):
                    m.d.comb += [C[l][1].addr.eq(b), CARE[l][1].addr.eq(b), WANT[l][1].addr.eq(b)]
                    if l in MASK:
                        m.d.comb += MASK[l][1].addr.eq(b)
                    m.d.sync += rd_blk.eq(b)
                    m.next = f"G_EX_{l}"
                with m.State(f"G_EX_{l}"):
                    g_on = CARE[l][1].data & mask_word(l, rd_blk)
                    with m.If(g_on != 0):
                        m.d.comb += [al_w.addr.eq(nact), al_w.en.eq(1), al_w.data.b.eq(rd_blk),
                                     al_w.data.base.eq(bbase)]
                        m.d.sync += [nact.eq(nact + 1), nact_last.eq(nact)]
                    m.d.sync += bbase.eq(bbase + nin)
                    with m.If(rd_blk == nbo - 1):
                        m.d.sync += [i.eq(0), e.eq(0), h_gap.eq(0), care_word.eq(0), want_word.eq(0), dacc.eq(0)]
                        m.next = f"H_{l}"
                    with m.Else():
                        m.d.sync += b.eq(b + 1)
                        m.next = f"G_RD_{l}"
                with m.State(f"H_{l}"):
                    m.d.sync += cur_l.eq(l)
                    m.d.comb += al_r.addr.eq(e)
                    last_a = (e == nact_last) | (nact == 0)
                    with m.If(h_gap != 0):
                        m.d.sync += h_gap.eq(h_gap - 1)
                    with m.Else():
                        m.d.sync += [h1_v.eq(1), h1_last.eq(last_a), h1_zero.eq(nact == 0), h1_i.eq(i),
                                     h_gap.eq(dl.interval - 1)]
                        with m.If(last_a):
                            m.d.sync += [e.eq(0), i.eq(i + 1)]
                            with m.If(i == nin - 1):
                                m.next = f"H_DRAIN_{l}"
                        with m.Else():
                            m.d.sync += e.eq(e + 1)
                with m.State(f"H_DRAIN_{l}"):
                    m.d.sync += cur_l.eq(l)
                    # the finishing stage may write in this cycle; everything before it must be empty
                    with m.If(~h1_v & ~h2_v & ~Cat(*hp_v).any()):
                        m.d.sync += [b.eq(0), bbase.eq(0), nact.eq(0)]
                        m.next = f"G_RD_{l - 1}" if l - 1 >= 2 else "U_RD_1"
                def _desire_stages(l=l, nin=nin):
                    # stage 1: block list entry arrived -> read W word and the block's desire state
                    with m.If(h1_v & (cur_l == l)):
                        m.d.comb += [W[l][1].addr.eq(al_r.data.base + h1_i), C[l][1].addr.eq(al_r.data.b),
                                     CARE[l][1].addr.eq(al_r.data.b), WANT[l][1].addr.eq(al_r.data.b)]
                        if l in MASK:
                            m.d.comb += MASK[l][1].addr.eq(al_r.data.b)
                        m.d.sync += [h2_v.eq(1), h2_last.eq(h1_last), h2_zero.eq(h1_zero), h2_i.eq(h1_i),
                                     rd_blk.eq(al_r.data.b)]
                    # stage 2: data arrived -> into the DesireLanes pipeline, control into its delay line
                    with m.If(h2_v & (cur_l == l)):
                        m.d.comb += [dl.start.eq(1), dl.w.eq(W[l][1].data), dl.count.eq(C[l][1].data),
                                     dl.care.eq(CARE[l][1].data),
                                     dl.want.eq(WANT[l][1].data), dl.keep.eq(mask_word(l, rd_blk))]
                        m.d.sync += [hp_v[0].eq(1), hp_last[0].eq(h2_last), hp_zero[0].eq(h2_zero),
                                     hp_i[0].eq(h2_i)]
                    # accumulate stage: P-lane term arrived -> D_i += term; D_i complete on the last block
                    # goes to a register, so the wide add and the compares are in different cycles
                    with m.If(hp_v[-1] & (cur_l == l)):
                        term = Mux(hp_zero[-1], 0, dl.term)
                        dsum = Signal(signed(p.desire_bits(l)), name=f"dsum{l}")
                        m.d.comb += dsum.eq(dacc + term)
                        with m.If(hp_last[-1]):
                            m.d.sync += [dacc.eq(0), fin_v.eq(1), fin_sum.eq(dsum), fin_i.eq(hp_i[-1])]
                        with m.Else():
                            m.d.sync += dacc.eq(dsum)
                    # finishing stage: care/want of input fin_i, written per word of P inputs
                    with m.If(fin_v & (cur_l == l)):
                        d_i, d_sum = fin_i, fin_sum
                        # |D| >= K as two compares that run in parallel (no negation in the path)
                        c_i = (d_sum >= cfg.k_lin) | (d_sum <= -cfg.k_lin)
                        w_i = d_sum > 0
                        lane = d_i[:lg] if lg else Const(0, 1)
                        cw = care_word | (c_i << lane)[:P]
                        ww = want_word | (w_i << lane)[:P]
                        emit(DebugKind.DESIRE_HID, l - 1, 0, d_i, value=[d_sum], aux=[Cat(c_i, w_i)])
                        with m.If((lane == P - 1) | (d_i == nin - 1)):
                            m.d.comb += [CARE[l - 1][2].addr.eq(d_i >> lg), CARE[l - 1][2].data.eq(cw),
                                         CARE[l - 1][2].en.eq(1),
                                         WANT[l - 1][2].addr.eq(d_i >> lg), WANT[l - 1][2].data.eq(ww),
                                         WANT[l - 1][2].en.eq(1)]
                            m.d.sync += [care_word.eq(0), want_word.eq(0)]
                        with m.Else():
                            m.d.sync += [care_word.eq(cw), want_word.eq(ww)]
                stages.append(_desire_stages)

            # ======================= weight update, l = 1 .. L ====================================
            for l in range(1, L + 1):
                nin, nbo, nw = N[l - 1], p.blocks(l), p.blocks(l - 1)
                nxt = f"U_RD_{l + 1}" if l < L else "OUT"

                def next_block(nbo=nbo, nin=nin, nxt=nxt, l=l):
                    """After a post block: the next block of this layer, or the next layer."""
                    with m.If(rd_blk == nbo - 1):
                        m.d.sync += [b.eq(0), bbase.eq(0)]
                        m.next = nxt
                    with m.Else():
                        m.d.sync += [b.eq(b + 1), bbase.eq(bbase + nin)]
                        m.next = f"U_RD_{l}"

                with m.State(f"U_RD_{l}"):
                    m.d.comb += [C[l][1].addr.eq(b), CARE[l][1].addr.eq(b), WANT[l][1].addr.eq(b)]
                    if l in MASK:
                        m.d.comb += MASK[l][1].addr.eq(b)
                    m.d.sync += rd_blk.eq(b)
                    m.next = f"U_EX_{l}"
                with m.State(f"U_EX_{l}"):
                    spiked = Cat(*[C[l][1].data[q] != 0 for q in range(P)])
                    a_bits = CARE[l][1].data & mask_word(l, rd_blk) & spiked
                    m.d.sync += [act.eq(a_bits), want_bits.eq(WANT[l][1].data), tt.eq(0), nt.eq(0),
                                 rtb.eq(rd_blk), xtb.eq(0)]
                    with m.If(a_bits != 0):
                        m.next = f"UT_{l}"
                    with m.Else():
                        next_block()
                with m.State(f"UT_{l}"):
                    m.d.sync += cur_l.eq(l)
                    m.d.comb += R[l][1].addr.eq(rtb)
                    m.d.sync += [ut1_v.eq(1), ut1_xtb.eq(xtb), rtb.eq(rtb + nbo), xtb.eq(xtb + nw), tt.eq(tt + 1)]
                    with m.If(tt == T - 1):
                        m.next = f"UT_DRAIN_{l}"
                with m.State(f"UT_DRAIN_{l}"):
                    m.d.sync += cur_l.eq(l)
                    m.d.sync += [k.eq(0), e.eq(0)]
                    m.d.sync += [accum[q].eq(0) for q in range(P)]
                    m.next = f"UW_RD_{l}"
                # Only inputs that spiked at some step are visited: any other input has a zero trace
                # at every step, so A = 0, mag = 0 and its weight stays (exact, as in the golden model).
                with m.State(f"UW_RD_{l}"):
                    m.d.sync += cur_l.eq(l)
                    m.d.comb += EVER[l][1].addr.eq(k)
                    m.next = f"UW_LD_{l}"
                with m.State(f"UW_LD_{l}"):
                    m.d.sync += cur_l.eq(l)
                    m.d.sync += [pend.eq(EVER[l][1].data), kbase.eq(k << lg), e.eq(0),
]
                    m.d.comb += st_r.addr.eq(0)
                    with m.If(EVER[l][1].data != 0):
                        m.next = f"UI_{l}"
                    with m.Elif(k == nw - 1):
                        m.next = f"UI_DRAIN_{l}"
                    with m.Else():
                        m.d.sync += k.eq(k + 1)
                        m.next = f"UW_RD_{l}"
                with m.State(f"UI_{l}"):
                    m.d.sync += cur_l.eq(l)
                    ubit = Signal(max(lg, 1), name=f"ubit{l}")
                    for q in reversed(range(P)):
                        with m.If(pend[q]):
                            m.d.comb += ubit.eq(q)
                    i_cur = (kbase | ubit) if lg else kbase
                    m.d.comb += [X[l][1].addr.eq(st_r.data.x + k),
                                 W[l][1].addr.eq(bbase + i_cur)]
                    last_e = e == nt - 1
                    if cfg.rounding == "stochastic":
                        # synapse (jj, i_cur)'s rounding hash reaches UpdateLanes' stage 2 with its word
                        for q in range(P):
                            jj = Cat(Const(q, lg), rd_blk) if lg else rd_blk
                            m.d.comb += hash_in[q].eq(skey ^ (l << 24) ^ (jj << 12) ^ i_cur)
                    # single-port W_l: the entry that reads the weight word waits while a word is written
                    w_busy = uw_v[-1] if f"w{l}" in p.single_port else Const(0)
                    # the step-list entry of the next cycle: this one again (stalled), the first
                    # (last entry of an input) or the next one
                    m.d.comb += st_r.addr.eq(Mux(last_e, Mux(w_busy, e, 0), e + 1))
                    with m.If(~(last_e & w_busy)):
                        m.d.sync += [u1_v.eq(1), u1_last.eq(last_e), u1_rbits.eq(st_r.data.r),
                                     u1_i.eq(i_cur)]
                        if lg:
                            m.d.sync += u1_lane.eq(ubit)
                        with m.If(last_e):
                            rest = pend & (pend - 1)
                            m.d.sync += [e.eq(0), pend.eq(rest)]
                            with m.If(rest == 0):
                                with m.If(k == nw - 1):
                                    m.next = f"UI_DRAIN_{l}"
                                with m.Else():
                                    m.d.sync += k.eq(k + 1)
                                    m.next = f"UW_RD_{l}"
                        with m.Else():
                            m.d.sync += e.eq(e + 1)
                with m.State(f"UI_DRAIN_{l}"):
                    m.d.sync += cur_l.eq(l)
                    # the block's last weight word is written in this cycle at the latest
                    with m.If(~u1_v & ~u2_v & ~Cat(0, *uw_v[:-1]).any()):
                        next_block()
                def _update_stages(l=l):
                    # t-scan stage: raster word arrived
                    with m.If(ut1_v & (cur_l == l)):
                        rb = R[l][1].data & act
                        with m.If(rb != 0):
                            m.d.comb += [st_w.addr.eq(nt), st_w.data.x.eq(ut1_xtb), st_w.data.r.eq(rb), st_w.en.eq(1)]
                            m.d.sync += nt.eq(nt + 1)
                    # arrival stage: trace word (and on the last entry the weight word) -> registers
                    with m.If(u1_v & (cur_l == l)):
                        xw = X[l][1].data
                        m.d.sync += [u2_v.eq(1), u2_last.eq(u1_last), u2_rbits.eq(u1_rbits), u2_i.eq(u1_i),
                                     u2_x.eq(Array(xw[q] for q in range(P))[u1_lane] if lg else xw[0]),
                                     u2_w.eq(W[l][1].data)]
                    # accumulate stage: the word's trace into the lanes that spiked at its step
                    if cfg.rounding == "stochastic":
                        m.d.comb += [ul.offset[q].eq(uo_offset[q]) for q in range(P)]
                    with m.If(u2_v & (cur_l == l)):
                        new_acc = [Mux(u2_rbits[q], accum[q] + u2_x, accum[q]) for q in range(P)]
                        with m.If(u2_last):
                            for q in range(P):
                                m.d.comb += [ul.accum[q].eq(new_acc[q]), ul.w[q].eq(u2_w[q])]
                            m.d.comb += [ul.active.eq(act), ul.want.eq(want_bits), ul.shift.eq(shift)]
                            m.d.sync += [uw_v[0].eq(1), uw_addr[0].eq(bbase + u2_i)]
                            m.d.sync += [accum[q].eq(0) for q in range(P)]
                        with m.Else():
                            m.d.sync += [accum[q].eq(new_acc[q]) for q in range(P)]
                    # write stage: the updated weight word leaves UpdateLanes (the port driven
                    # unconditionally, as X_l's in the scan stage)
                    m.d.comb += [W[l][2].addr.eq(uw_addr[-1]), W[l][2].en.eq(uw_v[-1] & (cur_l == l)),
                                 W[l][2].data.eq(ul.w_next)]
                stages.append(_update_stages)

            with m.State("OUT"):
                m.d.comb += self.results.valid.eq(1)
                with m.If(self.results.ready):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"

        for stage in stages:
            stage()
        return m
