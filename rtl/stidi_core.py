"""Binarized STiDi-BP training core: fully connected topologies, and conv/pooling maps under fully
connected layers (issue #11; conv topologies at P = 1).

One sample at a time, one stage at a time, P lanes; bit-exact against the integer golden model
``mfsnn.golden.stidi_fixed`` (the bit-level spec is docs/golden-spec-stidi.md, cited as §n). It is
composed of the shared skeleton (``SampleLoader``, ``WeightBank``, ``DebugTap``: rtl/skeleton.py) and
the tested STiDi lanes (rtl/stidi_lanes.py, rtl/stidi_conv.py); this file holds the sequencer, and
rtl/stidi_conv_phases.py the phases of conv and pooling stages (its docstring). Stages are the
golden model's (0 = input, one per topology token); ``l`` below is a weight stage (fc or conv).

Memories (``b`` = block of P post neurons, ``i`` = pre neuron; word address ``b*N_{l-1} + i`` as in the
desire core, lane k = post neuron ``b*P + k``, so one pre spike selects one word per post block):

* ``W_l`` latent weights (``WeightBank``: P x s``WBITS`` per word, the host's ``wport`` while idle);
* ``S_l`` the forward sign plane, P bits per word at the same addresses: the MSB of every latent
  weight. The forward pass reads only these bits. The sign plane follows every host write to ``W_l``
  and every weight the update writes (§9.2), so it always equals the latent weights' MSBs;
* ``time_l`` spike times of stage l (0 = the input), P per word; ``head``/``next`` the per-step spike
  lists of the stage an fc layer reads; ``u_out`` the output layer's membrane U(t) for the decision (§7);
  conv topologies: ``argmin_l`` of every pooling stage, ``unpooled`` the D routed below a pooling stage;
* ``err`` the (sign, level) error of the layer being updated, ``disp`` the displacement D of the
  stage below, ``keep`` its dropout bits (§10.3): shared by all layers, one layer is live at a time.

Phases (FSM state prefixes; each owns its counters):

* ``IDLE``: pixels -> ``EncoderRom`` -> ``time_0`` (§4); the host may use ``wport``.
* ``FW_*`` forward (§5), per fc layer: clear the step lists (T cycles), link every pre that spikes
  before T-1 into the list of its step (N_{l-1} cycles), then per post block b and step t walk the
  step's list, fetching one sign word per spike (``SignAccumulateLanes``), and integrate
  (``IntegrateLanes``): about blocks_l x (T + spiking pres) cycles.
* ``DEC_*`` decision (§7): the output times (min, max, index-first argmin, ties) and the largest
  U(m) among the earliest, one output neuron per cycle.
* ``TGT`` targets and the ternary output error (§8), per output block; all zero -> done.
* ``BW_*`` backward (§9), per fc layer from the top: dropout bits of the pre stage (``Mix32``), then per
  eligible pre j (fired, kept, and for layer 1 before T-1 as the golden model) and post block b one
  read-modify-write of ``W_l[b, j]`` through ``FcUpdateLanes``, whose new word also goes into ``S_l``
  and into ``DisplacementLanes`` (D with the updated weights, §9.3), summed over blocks into D_j.
* ``Q_*`` quantisation of D (§9.5–9.6) in three passes over the stage (``ErrorLevelLanes``: the
  largest leading one; ``L2Normaliser``: the norm shift, ``error_norm="l2"`` only; the levels into
  ``err``); no nonzero error -> done, else the next layer down.
* ``OUT``: the result beat (prediction, output spike times, cycles).

Nothing multiplies two data values: ±1 weights are sign bits, power-of-two errors are shifts,
addresses advance by adding constants.
"""

import operator
from dataclasses import dataclass
from functools import cached_property

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

from ..golden.stidi import StidiConfig, build_stages, default_thresholds, parse_stidi_topology
from ..golden.stidi_fixed import NORM_GUARD
from .lanes import Mix32
from . import stidi_conv_phases as conv_phases
from .skeleton import DebugTap, LaneShape, SampleLoader, WeightBank, core_members
from .stidi_lanes import (DisplacementLanes, EncoderRom, ErrorLevelLanes, FcUpdateLanes, IntegrateLanes,
                          L2Normaliser, SignAccumulateLanes, signed_bits)

__all__ = ["StidiCoreParams", "StidiDebugKind", "StidiCore"]


class StidiDebugKind:
    """Record kinds of the debug stream (``kind`` field); ``n`` is the first neuron of the record
    (flat, channel-major for a map stage), ``layer`` the stage (0 = input; conv and pool layers are
    stages of their own, as in the golden trace keys)."""
    ENCODE = 1     # value[0] = spike time of input n (stage 0)
    STEP = 2       # stage l, step t: value[k] = U after step t, aux[k] = I after step t's arrivals
    TIMES = 3      # stage l: value[k] = spike time (T = silent)
    DECISION = 4   # value[0] = prediction (§7), aux[0] = target case 1..5 (§8, training only)
    TARGET = 5     # value[k] = target time, aux[k] = ternary output error d
    DISP = 6       # stage m: value[k] = displacement D arriving at m (before the clip rule / routing)
    LEVEL = 7      # stage m: value[k] = error sign, aux[k] = level
    POOL = 8       # pooling stage l: value[0] = pooled spike time, aux[0] = argmin tap (§6)


def _pow2(n):
    return n >= 1 and n & (n - 1) == 0


def _host_chain(counts):
    """Row/column sizes (s_0, ..., s_L) whose products s_{l-1}*s_l hold weight layer l's ``counts[l-1]``
    words: the shape in which the shared host side (``sim.model.pack_weights``: an (s_l, s_{l-1})
    matrix per layer) moves a conv topology's weights. s_0 = 1, s_l = ceil(count / s_{l-1})."""
    chain = [1]
    for count in counts:
        chain.append(-(-count // chain[-1]))
    return tuple(chain)


@dataclass(frozen=True)
class StidiCoreParams(LaneShape):
    """Hardware shape of a STiDi-BP core: the golden ``StidiConfig`` (integer, binary forward, ternary
    output error; fully connected, or conv/pool maps then fully connected layers), parallelism P (a
    power of two; 1 for a conv topology) and the debug tap. A small test network is an ordinary
    config with a flat input, e.g. ``StidiConfig(topology="16-12-4")``.

    Stages are the golden model's (``golden.stidi.build_stages``: 0 = input, one per topology token);
    ``stage_sizes`` their neurons. ``sizes`` is what the shared host side (weight port packing,
    ``LaneShape.L``/``blocks``) sees: for a fully connected topology the stage sizes; for a conv
    topology a chain of host matrix shapes (``_host_chain``) in which weight layer l's words, its
    canonical ``(N_out, fan_in)`` weights in row-major order, travel as an (s_l, s_{l-1}) matrix
    (``sim.stidi_check.to_host`` / ``from_host`` convert).
    """
    cfg: StidiConfig
    parallelism: int = 1
    debug: bool = False

    @staticmethod
    def config_problems(cfg: StidiConfig) -> list:
        """What of ``cfg`` this core does not build, as (config fields concerned, why) pairs; empty
        when it builds it. The constructor raises the first; the CLI names the option of each field."""
        problems = []
        topology = parse_stidi_topology(cfg.topology)
        kinds = [layer[0] for layer in topology.layers]
        if topology.is_conv:
            if kinds[0] == "pool":
                problems.append((("topology",), f"StidiCore needs a conv layer before the first pooling layer "
                                                f"({cfg.topology!r} pools the input)"))
            if any(a == b == "pool" for a, b in zip(kinds, kinds[1:])):
                problems.append((("topology",), f"StidiCore routes the error through one pooling layer at a "
                                                f"time: {cfg.topology!r} has two in a row"))
        if cfg.arith != "fixed":
            problems.append((("arith",), f"StidiCore implements the integer model: arith must be 'fixed', "
                                         f"not {cfg.arith!r}"))
        if cfg.forward != "binary":
            problems.append((("forward",), f"StidiCore has 1-bit forward weights: forward must be 'binary', "
                                           f"not {cfg.forward!r}"))
        if cfg.output_levels != 0:
            problems.append((("output_levels",), f"StidiCore builds the ternary output error only: output_levels "
                                                 f"must be 0, not {cfg.output_levels}"))
        stages = build_stages(topology)
        hidden = [stages[s - 1].size for s in range(2, len(stages)) if stages[s].kind != "pool"]
        if cfg.drop8 and max(hidden, default=0) > 1 << 16:
            problems.append((("drop8", "topology"), "dropout hashes hidden neuron indices below 2**16 (§10.3): "
                                                    "a hidden layer is larger"))
        return problems

    def __post_init__(self):
        if not isinstance(self.cfg, StidiConfig):
            raise TypeError(f"cfg must be a StidiConfig, not {self.cfg!r}")
        problems = self.config_problems(self.cfg)
        if problems:
            raise ValueError(problems[0][1])
        try:
            p = operator.index(self.parallelism)
        except TypeError:
            raise TypeError(f"parallelism must be an integer, not {self.parallelism!r}") from None
        if not _pow2(p) or p > 256:
            raise ValueError(f"parallelism must be a power of two in 1..256, not {self.parallelism!r}")
        if self.is_conv and p != 1:
            raise ValueError(f"a conv topology ({self.cfg.topology!r}) is built with parallelism 1 only, "
                             f"not {self.parallelism!r}")
        if not isinstance(self.debug, bool):
            raise TypeError(f"debug must be a bool, not {self.debug!r}")

    # ---------------------------------------------------------------- stages
    @cached_property
    def stages(self):
        """The golden stages (kind, shape, kernel, weight shape, fan-in) of the topology."""
        return build_stages(parse_stidi_topology(self.cfg.topology))

    @property
    def is_conv(self):
        return parse_stidi_topology(self.cfg.topology).is_conv

    @property
    def top(self):
        """The output stage."""
        return len(self.stages) - 1

    @property
    def stage_sizes(self):
        """Neurons per stage, (N_0, ..., N_top); N_0 = the pixels the core takes per sample."""
        return tuple(stage.size for stage in self.stages)

    def stage_blocks(self, stage):
        """Words of P neurons of ``stage``."""
        return -(-self.stage_sizes[stage] // self.P)

    @property
    def weight_stages(self):
        """Stage of each weight layer 1..L, in order."""
        return tuple(s for s, stage in enumerate(self.stages) if stage.kind in ("fc", "conv"))

    def kind(self, stage):
        return self.stages[stage].kind

    def fan_in(self, stage):
        """Synapses per neuron of a weight stage: N_in (fc) or Cin*k*k (conv)."""
        return self.stages[stage].fan_in

    def weight_count(self, stage):
        """Latent weights of a weight stage: N_out * fan-in."""
        return self.stages[stage].weight_shape[0] * self.fan_in(stage)

    @property
    def n_pixels(self):
        return self.stage_sizes[0]

    @property
    def n_classes(self):
        return self.stage_sizes[-1]

    @property
    def synapses(self):
        """Weights of the network (the debug tap's default size measure)."""
        return sum(self.weight_count(s) for s in self.weight_stages)

    # ---------------------------------------------------------------- shape
    @property
    def topology(self):
        """The network: layer sizes for a fully connected one (``16-12-4``; a 14x14 map input is
        ``196-...``), the topology text for a conv one."""
        if self.is_conv:
            return self.cfg.topology
        return "-".join(map(str, self.stage_sizes))

    @property
    def sizes(self):
        """What ``LaneShape`` and the host side see (class docstring): the stage sizes of a fully
        connected topology, the host matrix chain of a conv one."""
        if not self.is_conv:
            return self.stage_sizes
        return _host_chain([self.weight_count(s) for s in self.weight_stages])

    @property
    def T(self):
        return self.cfg.time_steps

    @property
    def time_bits(self):
        return self.T.bit_length()          # times 0 .. T (T = silent)

    def w_depth(self, layer):
        """Words of weight memory ``layer`` (1..L): block-major (b*N_in + i) for fc; a conv topology
        (P = 1) keeps the canonical row-major order (n*fan_in + i, conv: co*Cin*k*k + tap)."""
        return self.blocks(layer) * self.sizes[layer - 1]

    @property
    def addr_bits(self):
        """Weight word address bits, as ``WeightBank`` derives them."""
        return max(ceil_log2(max(self.w_depth(l), 2)) for l in range(1, self.L + 1))

    @property
    def thresholds(self):
        """Theta per weight layer 1..L (the config's, or the golden defaults)."""
        if self.cfg.thresholds is not None:
            return tuple(self.cfg.thresholds)
        return default_thresholds(self.stages, self.cfg)

    @property
    def max_fan_in(self):
        """The largest fan-in of a weight stage: sizes I, U and the debug words."""
        return max(self.fan_in(s) for s in self.weight_stages)

    @property
    def max_fc_fan_in(self):
        """The largest pre stage of an fc stage: sizes the spike lists of the fc forward pass."""
        return max(self.stage_sizes[s - 1] for s in self.weight_stages if self.kind(s) == "fc")

    def fan_out(self, stage):
        """Synapses leaving one pre neuron of weight stage ``stage``: N_out (fc), Cout*k*k (conv)."""
        st = self.stages[stage]
        return st.shape[0] * (st.k * st.k if st.kind == "conv" else 1)

    @property
    def disp_stages(self):
        """Weight stages that send a displacement down (their pre stage is not the input)."""
        return tuple(s for s in self.weight_stages if s >= 2)

    @property
    def disp_bits(self):
        """Width of D: |D_j| <= fan-out * 2**(WBITS-1) << lvl_max (§3), lvl 0 from the ternary output error."""
        q, wb = self.cfg.levels, self.cfg.weight_bits
        bounds = [self.fan_out(s) << (wb - 1 + (0 if s == self.top else q)) for s in self.disp_stages]
        return signed_bits(max(bounds, default=1))

    @property
    def hidden_blocks(self):
        """Words of the displacement memory: the largest stage that receives D."""
        return max([self.stage_blocks(s - 1) for s in self.disp_stages], default=1)

    @property
    def quantised_stages(self):
        """Stages whose D is quantised into an error (§9.5–9.6): the weight stages below the top."""
        return tuple(s for s in self.weight_stages if s != self.top)

    def under_pool(self, stage):
        """``stage`` receives its D through the pooling stage above it (§9.4)."""
        return stage + 1 < len(self.stages) and self.kind(stage + 1) == "pool"

    @property
    def unpooled_words(self):
        return max([self.stage_sizes[s] for s in self.quantised_stages if self.under_pool(s)], default=0)

    # ---------------------------------------------------------------- stream layouts
    @property
    def label_layout(self):
        """label; train (0 = inference); step (global training-sample counter, dropout key §10.3);
        lr_shift[l-1] = R of weight layer l for this sample's epoch (§9.1 schedule, host side). An R
        of time_bits + Q + 1 or more gives every step 0, so the host may clamp R to 255."""
        return data.StructLayout({
            "label": unsigned(max(ceil_log2(self.n_classes), 1)),
            "train": 1,
            "step": unsigned(32),
            "lr_shift": data.ArrayLayout(unsigned(8), self.L),
        })

    @property
    def result_layout(self):
        """pred (§7), the output spike times, cycles from start to result (pixel loading excluded)."""
        return data.StructLayout({
            "pred": unsigned(max(ceil_log2(self.n_classes), 1)),
            "times": data.ArrayLayout(unsigned(self.time_bits), self.n_classes),
            "cycles": unsigned(32),
        })

    @property
    def debug_value_bits(self):
        fan = self.max_fan_in + 1
        return max(signed_bits(fan * (self.T - 1)), self.disp_bits, self.time_bits + 1,
                   max(ceil_log2(self.n_classes), 1) + 1)

    @property
    def debug_aux_bits(self):
        taps = max([st.k * st.k for st in self.stages if st.kind == "pool"], default=1)
        return max(signed_bits(self.max_fan_in + 1), (self.cfg.levels + 1).bit_length() + 1, 4, signed_bits(taps))

    @property
    def debug_layout(self):
        return data.StructLayout({
            "kind": unsigned(4),
            "layer": range(len(self.stages)),
            "t": unsigned(self.time_bits),
            "n": unsigned(max(self.stage_sizes).bit_length()),
            "value": data.ArrayLayout(signed(self.debug_value_bits), self.P),
            "aux": data.ArrayLayout(signed(self.debug_aux_bits), self.P),
        })


class StidiCore(wiring.Component):
    """Binarized STiDi-BP training/inference core for ``params`` (see the module docstring).

    Ports:
      * ``pixels``: N0 pixel beats (u8) per sample, in input order;
      * ``labels``: one beat per sample (``params.label_layout``): label, train, step, lr_shift;
      * ``results``: one beat per sample (``params.result_layout``): pred, output times, cycles;
      * ``wport``: the latent weights (P per word, address b*N_{l-1} + i) while ``busy`` is low;
      * ``cycles``: free-running cycle counter; ``busy``: a sample is being processed;
      * ``debug`` (``params.debug`` only): valid/payload records (``StidiDebugKind``), no backpressure.
    """

    def __init__(self, params: StidiCoreParams):
        if not isinstance(params, StidiCoreParams):
            raise TypeError(f"params must be StidiCoreParams, not {params!r}")
        self.params = params
        super().__init__(core_members(params))

    # ==============================================================================================
    def elaborate(self, platform):
        p = self.params
        m = Module()
        ctx = _Context(p)
        self._build_parts(m, ctx)
        self._build_registers(m, ctx)
        with m.FSM(name="ctrl"):
            with m.State("START"):          # one cycle after reset (see rtl/core.py: Icarus and X)
                m.next = "IDLE"
            self._idle_states(m, ctx)
            for s in range(1, p.top + 1):
                {"fc": StidiCore._forward_states, "conv": conv_phases.conv_forward_states,
                 "pool": conv_phases.pool_forward_states}[p.kind(s)](self, m, ctx, s)
            self._decision_states(m, ctx)
            for s in reversed(p.weight_stages):
                if p.kind(s) == "fc":
                    self._backward_states(m, ctx, s)
                else:
                    conv_phases.conv_backward_states(self, m, ctx, s)
            for s in reversed(p.quantised_stages):
                if p.under_pool(s):
                    conv_phases.unpool_states(self, m, ctx, s + 1)
                self._quantise_states(m, ctx, s)
            with m.State("OUT"):
                m.d.comb += self.results.valid.eq(1)
                with m.If(self.results.ready):
                    m.d.sync += ctx.busy.eq(0)
                    m.next = "IDLE"
        # data-arrival stages: they act on read data one or more cycles after a state issued the
        # read, so they sit outside the FSM (and after it: their port assignments win)
        self._host_sign_writes(m, ctx)
        self._encode_stage(m, ctx)
        self._list_stage(m, ctx)
        self._decision_stages(m, ctx)
        self._update_stages(m, ctx)
        self._quantise_stage(m, ctx)
        conv_phases.conv_stages(self, m, ctx)
        return m

    # ---------------------------------------------------------------- parts
    def _build_parts(self, m, ctx):
        p = self.params
        P, L, N, T, TB = p.P, p.L, p.stage_sizes, p.T, p.time_bits
        cfg = p.cfg

        def memory(name, shape, depth, granular=False, transparent=False):
            mem = Memory(shape=shape, depth=max(depth, 2), init=[])
            m.submodules[name] = mem
            write = mem.write_port(granularity=1 if granular else None)
            return mem.read_port(transparent_for=(write,) if transparent else ()), write

        ctx.loader = m.submodules.loader = SampleLoader(pixel_count=N[0], label_layout=p.label_layout)
        wiring.connect(m, wiring.flipped(self.pixels), ctx.loader.pixels)
        wiring.connect(m, wiring.flipped(self.labels), ctx.loader.labels)
        ctx.bank = m.submodules.weights = WeightBank(
            word_shape=ctx.lanes(signed(cfg.weight_bits)),
            memories=[(p.w_depth(l), False) for l in range(1, L + 1)])
        wiring.connect(m, wiring.flipped(self.wport), ctx.bank.wport)

        # forward sign plane and spike times
        ctx.sign = {s: memory(f"s{ctx.wl[s]}", unsigned(P), p.w_depth(ctx.wl[s])) for s in p.weight_stages}
        ctx.time = {x: memory(f"time{x}", ctx.lanes(unsigned(TB)), p.stage_blocks(x), granular=True)
                    for x in range(p.top + 1)}
        # per-step spike lists of the stage an fc layer reads: head[t] -> next[i] -> ... -> NIL
        ctx.nil = p.max_fc_fan_in
        pointer = unsigned(ctx.nil.bit_length())
        ctx.head = memory("head", pointer, T)
        ctx.next = memory("next", pointer, p.max_fc_fan_in)
        ctx.u_out = memory("u_out", ctx.lanes(signed(ctx.membrane_bits)), p.stage_blocks(p.top) * T)
        # backward: error of the layer being updated, displacement and dropout bits of the stage below
        ctx.err = memory("err", ctx.err_layout, max(p.stage_blocks(s) for s in p.weight_stages))
        if L >= 2:
            # a conv layer's displacement is a scatter-add (ScatterAdd): its read sees the write before
            ctx.disp = memory("disp", ctx.lanes(signed(p.disp_bits)), p.hidden_blocks, granular=True,
                              transparent=p.is_conv)
            if ctx.dropout:
                ctx.keep = memory("keep", unsigned(P), p.hidden_blocks)

        ctx.enc = m.submodules.enc = EncoderRom(lanes=1, time_steps=T)
        ctx.acc = m.submodules.sign_acc = SignAccumulateLanes(lanes=P, fan_in=p.max_fc_fan_in)
        ctx.integ = m.submodules.integrate = IntegrateLanes(lanes=P, fan_in=p.max_fan_in + 1, time_steps=T)
        ctx.upd = m.submodules.update = FcUpdateLanes(lanes=P, weight_bits=cfg.weight_bits, levels=cfg.levels,
                                                    max_lr_shift=ctx.max_lr_shift, time_steps=T)
        if L >= 2:
            ctx.dsp = m.submodules.displace = DisplacementLanes(lanes=P, weight_bits=cfg.weight_bits,
                                                              levels=cfg.levels, time_steps=T)
            # offsets of D words lie in [-disp_bits, 0]; the normaliser also needs -G representable
            offset_bits = max(signed_bits(p.disp_bits), signed_bits(NORM_GUARD))
            words = max(N[s] for s in p.quantised_stages)
            ctx.norm = m.submodules.l2 = L2Normaliser(lanes=P, words=words, offset_bits=offset_bits,
                                                      guard=NORM_GUARD)
            ctx.lvl = m.submodules.levels = ErrorLevelLanes(lanes=P, d_bits=p.disp_bits, levels=cfg.levels,
                                                          max_norm_shift=ctx.norm.max_shift, time_steps=T)
        if ctx.dropout:
            ctx.hash = [Mix32() for _ in range(P)]
            for q, h in enumerate(ctx.hash):
                m.submodules[f"hash{q}"] = h
        ctx.emit = DebugTap(m, self.debug if p.debug else None).emit
        conv_phases.build_conv_parts(self, m, ctx, memory)

    # ---------------------------------------------------------------- registers
    def _build_registers(self, m, ctx):
        p = self.params
        P, L, N, T = p.P, p.L, p.stage_sizes, p.T
        ctx.busy = Signal()
        m.d.comb += self.busy.eq(ctx.busy)
        cycle = Signal(32)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += self.cycles.eq(cycle)
        ctx.sample_cycles = Signal(32)
        with m.If(ctx.busy):
            m.d.sync += ctx.sample_cycles.eq(ctx.sample_cycles + 1)
        m.d.comb += ctx.bank.host_enable.eq(~ctx.busy)
        label = ctx.loader.label
        ctx.label, ctx.train, ctx.step = label.label, label.train, label.step
        # R per layer from the label beat; any R above the step's width gives step 0, as the clamp does
        ctx.lr_shift = {s: Mux(label.lr_shift[l - 1] > ctx.max_lr_shift, ctx.max_lr_shift, label.lr_shift[l - 1])
                        for s, l in ctx.wl.items()}

        # results
        ctx.pred = Signal(self.results.payload.pred.shape())
        ctx.out_times = Signal(data.ArrayLayout(unsigned(p.time_bits), N[-1]))
        m.d.comb += [self.results.payload.pred.eq(ctx.pred), self.results.payload.times.eq(ctx.out_times),
                     self.results.payload.cycles.eq(ctx.sample_cycles)]

        # forward
        ctx.fw_block = Signal(range(max(p.stage_blocks(s) for s in p.weight_stages)))
        ctx.fw_step = Signal(range(T))
        ctx.fw_pre = Signal(range(p.max_fc_fan_in))
        ctx.fw_layer = Signal(range(p.top + 1))         # the stage of the forward pass
        ctx.sign_base = Signal(p.addr_bits + 1)         # b * N_{l-1}: block b's sign words
        ctx.u_base = Signal(range(p.stage_blocks(p.top) * T + 1))  # b * T: block b's membranes in u_out
        ctx.walk_first = Signal()                       # the walk's pointer comes from head (else next)
        ctx.sign_valid = Signal()                       # a sign word arrives this cycle
        ctx.cur_i = Signal(ctx.integ.i.shape())
        ctx.cur_u = Signal(ctx.integ.u.shape())
        ctx.cur_t = Signal(ctx.integ.t_fire.shape())
        ctx.delta = Signal(ctx.acc.delta.shape())
        # list build pipeline: time word read (lst), head read (ins), head/next write (prev = last write)
        ctx.lst_v, ctx.lst_pre = Signal(), Signal.like(ctx.fw_pre)
        ctx.ins_v, ctx.ins_pre, ctx.ins_t = Signal(), Signal.like(ctx.fw_pre), Signal(range(T + 1))
        ctx.prev_v, ctx.prev_pre, ctx.prev_t = Signal(), Signal.like(ctx.fw_pre), Signal(range(T + 1))

        # decision and targets
        ctx.dec_k = Signal(range(N[-1]))
        ctx.dec_base = Signal.like(ctx.u_base)
        ctx.scan_v, ctx.scan_k = Signal(), Signal.like(ctx.dec_k)
        ctx.pick_v, ctx.pick_k = Signal(), Signal.like(ctx.dec_k)
        ctx.t_min, ctx.t_max, ctx.t_label = Signal(range(T + 1)), Signal(range(T + 1)), Signal(range(T + 1))
        ctx.first_min = Signal.like(ctx.dec_k)           # index-first argmin
        ctx.tied = Signal()                            # more than one output at t_min
        ctx.best_u = Signal(signed(ctx.membrane_bits))
        ctx.have_best = Signal()
        ctx.tgt_block = Signal(range(p.stage_blocks(p.top)))
        ctx.tgt_v, ctx.tgt_b = Signal(), Signal.like(ctx.tgt_block)
        ctx.any_error = Signal()
        ctx.case = Signal(range(6))                    # §8 branch 1..5, from the decision's summary

        # backward
        ctx.bw_layer = Signal(range(p.top + 1))         # the stage being updated
        ctx.bw_pre = Signal(range(p.max_fc_fan_in))
        ctx.bw_block = Signal(range(max(p.stage_blocks(s) for s in p.weight_stages)))
        ctx.w_base = Signal(p.addr_bits + 1)           # b * N_{l-1}
        ctx.t_pre = Signal(range(T + 1))
        ctx.prep_word = Signal(range(p.hidden_blocks))
        ctx.key_wait = Signal(range(Mix32.latency + 1))
        ctx.drop_key = Signal(32)
        lat = Mix32.latency
        ctx.kp_v = [Signal(name=f"kp_v{n}") for n in range(lat)]
        ctx.kp_word = [Signal.like(ctx.prep_word, name=f"kp_word{n}") for n in range(lat)]
        m.d.sync += ctx.kp_v[0].eq(0)
        for n in range(1, lat):
            m.d.sync += [ctx.kp_v[n].eq(ctx.kp_v[n - 1]), ctx.kp_word[n].eq(ctx.kp_word[n - 1])]
        # update pipeline: u1 = read data arrives (FcUpdateLanes in), u2, u3 = its new word out;
        # u2 and u3 also carry the block's error and post times for DisplacementLanes
        def stage(name, with_data):
            regs = {"v": Signal(name=f"{name}_v"), "addr": Signal(p.addr_bits, name=f"{name}_addr"),
                    "last": Signal(name=f"{name}_last"), "pre": Signal.like(ctx.bw_pre, name=f"{name}_pre"),
                    "t_pre": Signal(range(T + 1), name=f"{name}_t_pre")}
            if with_data:
                regs["t_post"] = Signal(ctx.lanes(unsigned(p.time_bits)), name=f"{name}_t_post")
                regs["err"] = Signal(ctx.err_layout, name=f"{name}_err")
            return regs
        ctx.u1, ctx.u2, ctx.u3 = stage("u1", False), stage("u2", True), stage("u3", True)
        m.d.sync += ctx.u1["v"].eq(0)
        # displacement pipeline control (DisplacementLanes' latency after u3)
        dlat = ctx.dsp.latency if L >= 2 else 0
        ctx.dq_v = [Signal(name=f"dq_v{n}") for n in range(dlat)]
        ctx.dq_last = [Signal(name=f"dq_last{n}") for n in range(dlat)]
        ctx.dq_pre = [Signal.like(ctx.bw_pre, name=f"dq_pre{n}") for n in range(dlat)]
        ctx.disp_acc = Signal(signed(p.disp_bits))

        # quantisation
        ctx.q_word = Signal(range(max([p.hidden_blocks] + [p.stage_blocks(s) for s in p.quantised_stages])))
        ctx.q_stage = Signal(range(p.top + 1))
        ctx.q_pass = Signal(2)                         # 0 largest leading one, 1 L2 norm, 2 levels
        ctx.q_v, ctx.q_w = Signal(), Signal.like(ctx.q_word)
        ctx.top_length = Signal(range(p.disp_bits + 1))
        ctx.norm_shift = Signal(range(ctx.norm.max_shift + 1)) if L >= 2 else None
        ctx.any_sign = Signal()

        # the pipelines' valid bits are set by the states that issue reads, cleared otherwise
        m.d.sync += [ctx.lst_v.eq(0), ctx.scan_v.eq(0), ctx.pick_v.eq(0), ctx.tgt_v.eq(0), ctx.q_v.eq(0),
                     ctx.sign_valid.eq(0)]

    # ---------------------------------------------------------------- IDLE and encoding
    def _idle_states(self, m, ctx):
        with m.State("IDLE"):
            m.d.comb += ctx.loader.idle.eq(1)
            m.d.comb += ctx.enc.pixel[0].eq(ctx.loader.pixel.value)
            with m.If(ctx.loader.start):
                m.d.sync += [ctx.busy.eq(1), ctx.sample_cycles.eq(0)]
                self._start_stage(m, ctx, 1)

    def _host_sign_writes(self, m, ctx):
        """A host write of latent weights (only while idle, as ``WeightBank`` takes them) also writes
        their MSBs into the sign plane."""
        p = self.params
        wp = self.wport
        for s, l in ctx.wl.items():
            with m.If(~ctx.busy & wp.we & (wp.layer == l - 1)):
                msbs = Cat(*(wp.wdata[(k + 1) * p.cfg.weight_bits - 1] for k in range(p.P)))
                m.d.comb += [ctx.sign[s][1].addr.eq(wp.addr), ctx.sign[s][1].data.eq(msbs), ctx.sign[s][1].en.eq(1)]

    def _encode_stage(self, m, ctx):
        """A pixel beat's spike time (``EncoderRom``, latency 1) into its lane of ``time_0``."""
        p = self.params
        enc_v, enc_index = Signal(), Signal.like(ctx.loader.pixel.index)
        m.d.sync += [enc_v.eq(ctx.loader.pixel.valid), enc_index.eq(ctx.loader.pixel.index)]
        with m.If(enc_v):
            write = ctx.time[0][1]
            m.d.comb += [write.addr.eq(enc_index >> p.lg), write.en.eq(1 << ctx.lane_of(enc_index))]
            m.d.comb += [write.data[q].eq(ctx.enc.time[0]) for q in range(p.P)]
            ctx.emit(StidiDebugKind.ENCODE, 0, 0, enc_index, value=[ctx.enc.time[0]])

    # ---------------------------------------------------------------- forward (§5)
    def _start_stage(self, m, ctx, l):
        """Go to the forward pass of stage ``l`` (fc: clear its step lists first), or to the decision
        after the top stage."""
        p = self.params
        if l > p.top:
            m.d.sync += ctx.dec_k.eq(0)
            m.next = "DEC_SCAN"
        elif p.kind(l) == "fc":
            m.d.sync += [ctx.fw_step.eq(0), ctx.fw_layer.eq(l)]
            m.next = f"FW_CLEAR_{l}"
        else:
            conv_phases.start_map_stage(self, m, ctx, l)

    def _forward_states(self, m, ctx, l):
        """The fc forward pass of stage ``l`` (module docstring)."""
        p = self.params
        T, n_in, blocks = p.T, p.stage_sizes[l - 1], p.stage_blocks(l)
        head_r, head_w = ctx.head
        next_r = ctx.next[0]
        sign_r = ctx.sign[l][0]

        with m.State(f"FW_CLEAR_{l}"):
            # every step's list starts empty
            m.d.comb += [head_w.addr.eq(ctx.fw_step), head_w.data.eq(ctx.nil), head_w.en.eq(1)]
            m.d.sync += ctx.fw_step.eq(ctx.fw_step + 1)
            with m.If(ctx.fw_step == T - 1):
                m.d.sync += [ctx.fw_step.eq(0), ctx.fw_pre.eq(0)]
                m.next = f"FW_LIST_{l}"

        with m.State(f"FW_LIST_{l}"):
            # read pre i's spike time; the list stage links it into its step's list
            m.d.comb += ctx.time[l - 1][0].addr.eq(ctx.fw_pre >> p.lg)
            m.d.sync += [ctx.lst_v.eq(1), ctx.lst_pre.eq(ctx.fw_pre), ctx.fw_pre.eq(ctx.fw_pre + 1)]
            with m.If(ctx.fw_pre == n_in - 1):
                m.next = f"FW_LIST_DRAIN_{l}"

        with m.State(f"FW_LIST_DRAIN_{l}"):
            # the last head/next write happens in the last cycle with ins_v
            with m.If(~ctx.lst_v & ~ctx.ins_v):
                m.d.comb += head_r.addr.eq(0)
                m.d.sync += [ctx.fw_block.eq(0), ctx.sign_base.eq(0), ctx.u_base.eq(0), ctx.fw_step.eq(0)]
                self._clear_neurons(m, ctx)
                m.next = f"FW_WALK_{l}"

        with m.State(f"FW_WALK_{l}"):
            # one list entry per cycle: fetch its sign word and the next pointer; at the list's end
            # (NIL) step t of the block's P neurons integrates, and the next step's head is read
            pointer = Mux(ctx.walk_first, head_r.data, next_r.data)
            m.d.sync += ctx.walk_first.eq(0)
            m.d.comb += [ctx.acc.spike.eq(ctx.sign_valid), ctx.acc.negative.eq(sign_r.data),
                         ctx.acc.delta.eq(ctx.delta)]
            with m.If(pointer != ctx.nil):
                m.d.comb += [next_r.addr.eq(pointer), sign_r.addr.eq(ctx.sign_base + pointer)]
                m.d.sync += [ctx.sign_valid.eq(1), ctx.delta.eq(ctx.acc.delta_next)]
            with m.Else():
                integ = ctx.integ
                m.d.comb += [integ.i.eq(ctx.cur_i), integ.u.eq(ctx.cur_u), integ.t_fire.eq(ctx.cur_t),
                             integ.t.eq(ctx.fw_step), integ.threshold.eq(ctx.threshold(l))]
                m.d.comb += ctx.each(integ.delta, ctx.acc.delta_next)   # I is one bit wider at F + 1 = 2**n
                m.d.sync += [ctx.cur_i.eq(integ.i_next), ctx.cur_u.eq(integ.u_next),
                             ctx.cur_t.eq(integ.t_fire_next), ctx.delta.eq(0), ctx.walk_first.eq(1)]
                ctx.emit(StidiDebugKind.STEP, l, ctx.fw_step, ctx.fw_block << p.lg,
                         value=[integ.u_next[q] for q in range(p.P)], aux=[integ.i_next[q] for q in range(p.P)])
                if l == p.top:
                    u_w = ctx.u_out[1]
                    m.d.comb += [u_w.addr.eq(ctx.u_base + ctx.fw_step), u_w.en.eq(1)]
                    m.d.comb += ctx.each(u_w.data, integ.u_next)
                with m.If(ctx.fw_step == T - 1):
                    m.next = f"FW_BLOCK_END_{l}"
                with m.Else():
                    m.d.comb += head_r.addr.eq(ctx.fw_step + 1)
                    m.d.sync += ctx.fw_step.eq(ctx.fw_step + 1)

        with m.State(f"FW_BLOCK_END_{l}"):
            time_w = ctx.time[l][1]
            m.d.comb += [time_w.addr.eq(ctx.fw_block), time_w.en.eq(ctx.all_lanes)]
            m.d.comb += ctx.each(time_w.data, ctx.cur_t)
            ctx.emit(StidiDebugKind.TIMES, l, 0, ctx.fw_block << p.lg, value=[ctx.cur_t[q] for q in range(p.P)])
            self._clear_neurons(m, ctx)
            m.d.sync += ctx.fw_step.eq(0)
            with m.If(ctx.fw_block == blocks - 1):
                self._start_stage(m, ctx, l + 1)
            with m.Else():
                m.d.comb += head_r.addr.eq(0)
                m.d.sync += [ctx.fw_block.eq(ctx.fw_block + 1), ctx.sign_base.eq(ctx.sign_base + n_in),
                             ctx.u_base.eq(ctx.u_base + T)]
                m.next = f"FW_WALK_{l}"

    def _clear_neurons(self, m, ctx):
        p = self.params
        m.d.sync += [ctx.cur_i.eq(0), ctx.cur_u.eq(0), ctx.delta.eq(0), ctx.walk_first.eq(1)]
        m.d.sync += [ctx.cur_t[q].eq(p.T) for q in range(p.P)]

    def _list_stage(self, m, ctx):
        """Spike-list build: pre i's time arrived -> read the head of its step (if it spikes before T-1:
        a later spike cannot change a membrane, §5); one cycle later i becomes the head and points at
        the old head. Only the write of the cycle before can be missing from that read (the memory is
        not transparent), and it is forwarded."""
        p = self.params
        head_r, head_w = ctx.head
        next_w = ctx.next[1]
        m.d.sync += [ctx.ins_v.eq(0), ctx.prev_v.eq(ctx.ins_v), ctx.prev_pre.eq(ctx.ins_pre), ctx.prev_t.eq(ctx.ins_t)]
        for l in p.weight_stages:
            if p.kind(l) != "fc":
                continue
            with m.If(ctx.lst_v & (ctx.fw_layer == l)):
                t = ctx.pick(ctx.time[l - 1][0].data, ctx.lst_pre)
                with m.If(t < p.T - 1):
                    m.d.comb += head_r.addr.eq(t)
                    m.d.sync += [ctx.ins_v.eq(1), ctx.ins_pre.eq(ctx.lst_pre), ctx.ins_t.eq(t)]
        with m.If(ctx.ins_v):
            old = Mux(ctx.prev_v & (ctx.prev_t == ctx.ins_t), ctx.prev_pre, head_r.data)
            m.d.comb += [head_w.addr.eq(ctx.ins_t), head_w.data.eq(ctx.ins_pre), head_w.en.eq(1),
                         next_w.addr.eq(ctx.ins_pre), next_w.data.eq(old), next_w.en.eq(1)]

    # ---------------------------------------------------------------- decision (§7) and targets (§8)
    def _decision_states(self, m, ctx):
        p = self.params
        P, L, T, n_out = p.P, p.top, p.T, p.n_classes
        time_r = ctx.time[L][0]

        with m.State("DEC_SCAN"):
            # output neuron k's time -> min, max, index-first argmin, ties, the label's time
            m.d.comb += time_r.addr.eq(ctx.dec_k >> p.lg)
            m.d.sync += [ctx.scan_v.eq(1), ctx.scan_k.eq(ctx.dec_k), ctx.dec_k.eq(ctx.dec_k + 1)]
            with m.If(ctx.dec_k == n_out - 1):
                m.next = "DEC_SCAN_DRAIN"
        with m.State("DEC_SCAN_DRAIN"):
            with m.If(~ctx.scan_v):
                m.d.sync += [ctx.dec_k.eq(0), ctx.dec_base.eq(0), ctx.have_best.eq(0)]
                m.next = "DEC_PICK"

        with m.State("DEC_PICK"):
            # output neuron k's time and U(min(m, T-1)) -> the largest U among the earliest
            step = Mux(ctx.t_min == T, T - 1, ctx.t_min)
            m.d.comb += [time_r.addr.eq(ctx.dec_k >> p.lg), ctx.u_out[0].addr.eq(ctx.dec_base + step)]
            m.d.sync += [ctx.pick_v.eq(1), ctx.pick_k.eq(ctx.dec_k), ctx.dec_k.eq(ctx.dec_k + 1)]
            if P > 1:
                with m.If(ctx.lane_of(ctx.dec_k) == P - 1):
                    m.d.sync += ctx.dec_base.eq(ctx.dec_base + T)
            else:
                m.d.sync += ctx.dec_base.eq(ctx.dec_base + T)
            with m.If(ctx.dec_k == n_out - 1):
                m.next = "DEC_PICK_DRAIN"
        with m.State("DEC_PICK_DRAIN"):
            with m.If(~ctx.pick_v):
                m.next = "DEC_DONE"

        with m.State("DEC_DONE"):
            ctx.emit(StidiDebugKind.DECISION, L, 0, 0, value=[ctx.pred], aux=[ctx.case])
            with m.If(ctx.train):
                m.d.sync += [ctx.tgt_block.eq(0), ctx.any_error.eq(0)]
                m.next = "TGT"
            with m.Else():
                m.next = "OUT"

        with m.State("TGT"):
            m.d.comb += time_r.addr.eq(ctx.tgt_block)
            m.d.sync += [ctx.tgt_v.eq(1), ctx.tgt_b.eq(ctx.tgt_block), ctx.tgt_block.eq(ctx.tgt_block + 1)]
            with m.If(ctx.tgt_block == p.stage_blocks(L) - 1):
                m.next = "TGT_DRAIN"
        with m.State("TGT_DRAIN"):
            with m.If(~ctx.tgt_v):
                with m.If(ctx.any_error):
                    self._start_backward(m, ctx)
                with m.Else():
                    m.next = "OUT"

    def _decision_stages(self, m, ctx):
        p = self.params
        P, L, T, n_out = p.P, p.top, p.T, p.n_classes
        time_r = ctx.time[L][0]
        cfg = p.cfg

        with m.If(ctx.scan_v):
            t = ctx.pick(time_r.data, ctx.scan_k)
            with m.Switch(ctx.scan_k):
                for k in range(n_out):
                    with m.Case(k):
                        m.d.sync += ctx.out_times[k].eq(t)
            with m.If(ctx.scan_k == ctx.label):
                m.d.sync += ctx.t_label.eq(t)
            with m.If((ctx.scan_k == 0) | (t < ctx.t_min)):
                m.d.sync += [ctx.t_min.eq(t), ctx.first_min.eq(ctx.scan_k), ctx.tied.eq(0)]
            with m.Elif(t == ctx.t_min):
                m.d.sync += ctx.tied.eq(1)
            with m.If((ctx.scan_k == 0) | (t > ctx.t_max)):
                m.d.sync += ctx.t_max.eq(t)

        with m.If(ctx.pick_v):
            t = ctx.pick(time_r.data, ctx.pick_k)
            u = ctx.pick(ctx.u_out[0].data, ctx.pick_k)
            candidate = (ctx.t_min == T) | (t == ctx.t_min)
            with m.If(candidate & (~ctx.have_best | (u > ctx.best_u))):     # strict: ties keep the lower index
                m.d.sync += [ctx.best_u.eq(u), ctx.pred.eq(ctx.pick_k), ctx.have_best.eq(1)]

        # the §8 case from the scan's summary (pred is the vwin of case 5: the same rule, §7)
        case = ctx.case
        label_first = ctx.first_min == ctx.label
        with m.If(ctx.t_min == T):
            m.d.comb += case.eq(1)
        with m.Elif(label_first & ~ctx.tied):
            m.d.comb += case.eq(2)
        with m.Elif(label_first):
            m.d.comb += case.eq(3)
        with m.Elif((ctx.t_min == ctx.t_max) | (ctx.t_label == ctx.t_min)):
            m.d.comb += case.eq(4)
        with m.Else():
            m.d.comb += case.eq(5)

        with m.If(ctx.tgt_v):
            early = Signal(range(T + 1))             # max(m - NEG, 0): the label's target
            late = Signal(range(T + 1))              # min(m + ADD, T) (cases 3, 4) or min(m + ADD, M) (5)
            m.d.comb += early.eq(Mux(ctx.t_min > cfg.neg, ctx.t_min - cfg.neg, 0))
            bound = Mux(case == 5, ctx.t_max, T)
            m.d.comb += late.eq(Mux(ctx.t_min + cfg.add > bound, bound, ctx.t_min + cfg.add))
            words = time_r.data
            err_w = ctx.err[1]
            signs, targets = [], []
            for q in range(P):
                k = Cat(Const(q, p.lg), ctx.tgt_b) if p.lg else ctx.tgt_b
                t = words[q]
                is_label, is_winner = k == ctx.label, k == ctx.pred
                target = Signal(range(T + 1), name=f"target_{q}")
                with m.Switch(case):
                    with m.Case(1):
                        m.d.comb += target.eq(Mux(is_label, T - cfg.add, T))
                    with m.Case(3, 4):
                        m.d.comb += target.eq(Mux(is_label, early, Mux(t == ctx.t_min, late, t)))
                    with m.Case(5):
                        m.d.comb += target.eq(Mux(is_label, early, Mux(is_winner, late, t)))
                    with m.Default():
                        m.d.comb += target.eq(t)
                real = k < n_out
                d = Mux(real & (target > t), 1, Mux(real & (target < t), -1, 0))
                signs.append(d)
                targets.append(target)
                m.d.comb += [err_w.data.sign[q].eq(d), err_w.data.level[q].eq(0)]
            m.d.comb += [err_w.addr.eq(ctx.tgt_b), err_w.en.eq(1)]
            with m.If(Cat(*(s != 0 for s in signs)).any()):
                m.d.sync += ctx.any_error.eq(1)
            ctx.emit(StidiDebugKind.TARGET, L, 0, ctx.tgt_b << p.lg, value=targets, aux=signs)

    # ---------------------------------------------------------------- backward (§9)
    def _start_backward(self, m, ctx):
        p = self.params
        if ctx.dropout and p.L >= 2:
            m.d.sync += ctx.key_wait.eq(0)
            m.next = "BW_KEY"
        else:
            self._start_layer_update(m, ctx, p.top)

    def _start_layer_update(self, m, ctx, l):
        """Go to the update of weight stage ``l``: clear the displacement of its pre stage first (if
        it sends one down, §9.3)."""
        p = self.params
        m.d.sync += [ctx.bw_layer.eq(l), ctx.prep_word.eq(0), ctx.bw_pre.eq(0)]
        if l >= 2:
            m.next = f"BW_PREP_{l}"
        elif p.kind(l) == "fc":
            m.next = f"BW_PRE_{l}"
        else:
            conv_phases.start_conv_update(self, m, ctx, l)

    def _after_displacement(self, m, ctx, l):
        """Weight stage ``l``'s D is complete: route it through a pooling stage (§9.4), then quantise
        it (§9.5–9.6); without a stage below, the sample is done."""
        p = self.params
        if l < 2:
            m.next = "OUT"
            return
        m.d.sync += [ctx.q_word.eq(0), ctx.q_pass.eq(0), ctx.top_length.eq(0)]
        if p.kind(l - 1) == "pool":
            m.d.sync += ctx.q_stage.eq(l - 2)
            conv_phases.start_unpool(self, m, ctx, l - 1)
        else:
            m.d.sync += ctx.q_stage.eq(l - 1)
            m.next = f"Q_PASS_{l - 1}"

    def _prep_states(self, m, ctx, l):
        """Clear D of the stage below weight stage ``l`` (and draw its dropout bits), then its update."""
        p = self.params
        stage = l - 1
        with m.State(f"BW_PREP_{l}"):
            # D of the stage below starts at 0; its dropout bits enter the hash pipelines
            disp_w = ctx.disp[1]
            m.d.comb += [disp_w.addr.eq(ctx.prep_word), disp_w.en.eq(ctx.all_lanes)]
            m.d.comb += [disp_w.data[q].eq(0) for q in range(p.P)]
            if ctx.dropout:
                for q in range(p.P):
                    index = Cat(Const(q, p.lg), ctx.prep_word) if p.lg else ctx.prep_word
                    m.d.comb += ctx.hash[q].i.eq(ctx.drop_key ^ (stage << 16) ^ index)
                m.d.sync += [ctx.kp_v[0].eq(1), ctx.kp_word[0].eq(ctx.prep_word)]
            m.d.sync += ctx.prep_word.eq(ctx.prep_word + 1)
            with m.If(ctx.prep_word == p.stage_blocks(stage) - 1):
                m.next = f"BW_PREP_DRAIN_{l}"
        with m.State(f"BW_PREP_DRAIN_{l}"):
            with m.If(~Cat(*ctx.kp_v).any()):
                if p.kind(l) == "fc":
                    m.next = f"BW_PRE_{l}"
                else:
                    conv_phases.start_conv_update(self, m, ctx, l)

    def _backward_states(self, m, ctx, l):
        """The fc update of stage ``l`` (module docstring)."""
        p = self.params
        P, T, n_in, blocks = p.P, p.T, p.stage_sizes[l - 1], p.stage_blocks(l)
        if l == p.top and ctx.dropout and p.L >= 2:
            with m.State("BW_KEY"):
                # key = mix32(SEED ^ step): one hash per sample (§10.3)
                m.d.comb += ctx.hash[0].i.eq(Const(p.cfg.seed, 32) ^ ctx.step)
                m.d.sync += [ctx.key_wait.eq(ctx.key_wait + 1), ctx.drop_key.eq(ctx.hash[0].o)]
                with m.If(ctx.key_wait == Mix32.latency):
                    self._start_layer_update(m, ctx, l)

        if l >= 2:
            self._prep_states(m, ctx, l)

        def next_pre():
            with m.If(ctx.bw_pre == n_in - 1):
                m.next = f"BW_DRAIN_{l}"
            with m.Else():
                m.d.sync += ctx.bw_pre.eq(ctx.bw_pre + 1)
                m.next = f"BW_PRE_{l}"

        with m.State(f"BW_PRE_{l}"):
            m.d.comb += ctx.time[l - 1][0].addr.eq(ctx.bw_pre >> p.lg)
            if ctx.dropout and l >= 2:
                m.d.comb += ctx.keep[0].addr.eq(ctx.bw_pre >> p.lg)
            m.next = f"BW_PRE_EX_{l}"
        with m.State(f"BW_PRE_EX_{l}"):
            # eligible pre: fired, not dropped; layer 1 also skips inputs at T-1 as the golden
            # fc_backward does (their step to any post is 0 unless the post is silent)
            t = ctx.pick(ctx.time[l - 1][0].data, ctx.bw_pre)
            eligible = t < (T if l >= 2 else T - 1)
            if ctx.dropout and l >= 2:
                eligible &= ctx.keep[0].data.bit_select(ctx.lane_of(ctx.bw_pre), 1)
            with m.If(eligible):
                m.d.sync += [ctx.t_pre.eq(t), ctx.bw_block.eq(0), ctx.w_base.eq(0)]
                m.next = f"BW_BLOCK_{l}"
            with m.Else():
                next_pre()
        with m.State(f"BW_BLOCK_{l}"):
            # read W_l[b, j], the block's error and post times; the update stages do the rest
            m.d.comb += [ctx.bank.reads[ctx.wl[l] - 1].addr.eq(ctx.w_base + ctx.bw_pre),
                         ctx.err[0].addr.eq(ctx.bw_block),
                         ctx.time[l][0].addr.eq(ctx.bw_block)]
            u1 = ctx.u1
            m.d.sync += [u1["v"].eq(1), u1["addr"].eq(ctx.w_base + ctx.bw_pre),
                         u1["last"].eq(ctx.bw_block == blocks - 1), u1["pre"].eq(ctx.bw_pre),
                         u1["t_pre"].eq(ctx.t_pre)]
            with m.If(ctx.bw_block == blocks - 1):
                next_pre()
            with m.Else():
                m.d.sync += [ctx.bw_block.eq(ctx.bw_block + 1), ctx.w_base.eq(ctx.w_base + n_in)]
        with m.State(f"BW_DRAIN_{l}"):
            busy = ctx.u1["v"] | ctx.u2["v"] | ctx.u3["v"] | Cat(*ctx.dq_v).any()
            with m.If(~busy):
                self._after_displacement(m, ctx, l)

    def _update_stages(self, m, ctx):
        """The read-modify-write of one weight word per cycle: u1 read data -> ``FcUpdateLanes`` ->
        u3 new word -> W_l, S_l and ``DisplacementLanes`` -> D_j summed over the post blocks."""
        p = self.params
        P, L = p.P, p.L
        u1, u2, u3 = ctx.u1, ctx.u2, ctx.u3
        fc_stages = [s for s in p.weight_stages if p.kind(s) == "fc"]
        # u1: the words of W_l, err and the post times arrive -> FcUpdateLanes (registered inside);
        # the error and post times travel on beside it for DisplacementLanes
        for l in fc_stages:
            with m.If(u1["v"] & (ctx.bw_layer == l)):
                m.d.comb += [ctx.upd.lr_shift.eq(ctx.lr_shift[l]), ctx.upd.keep.eq(ctx.all_lanes)]
                m.d.comb += [ctx.upd.t_pre[q].eq(u1["t_pre"]) for q in range(P)]
                m.d.comb += ctx.each(ctx.upd.w, ctx.bank.reads[ctx.wl[l] - 1].data)
                m.d.comb += ctx.each(ctx.upd.t_post, ctx.time[l][0].data)
                m.d.comb += ctx.each(ctx.upd.sign, ctx.err[0].data.sign)
                m.d.comb += ctx.each(ctx.upd.level, ctx.err[0].data.level)
                m.d.sync += [u2["t_post"].eq(ctx.time[l][0].data), u2["err"].eq(ctx.err[0].data)]
        m.d.sync += [u2[key].eq(u1[key]) for key in u1]
        m.d.sync += [u3[key].eq(u2[key]) for key in u2]
        for l in fc_stages:
            with m.If(u3["v"] & (ctx.bw_layer == l)):
                write = ctx.bank.writes[ctx.wl[l] - 1]
                m.d.comb += [write.addr.eq(u3["addr"]), write.en.eq(1)]
                m.d.comb += ctx.each(write.data, ctx.upd.w_next)
                sign_w = ctx.sign[l][1]
                m.d.comb += [sign_w.addr.eq(u3["addr"]), sign_w.data.eq(ctx.upd.negative), sign_w.en.eq(1)]
        if L < 2:
            return
        dsp = ctx.dsp
        m.d.comb += [dsp.t_pre.eq(u3["t_pre"]), dsp.keep.eq(1)]
        m.d.comb += ctx.each(dsp.w, ctx.upd.w_next) + ctx.each(dsp.t_post, u3["t_post"])
        m.d.comb += ctx.each(dsp.sign, u3["err"].sign) + ctx.each(dsp.level, u3["err"].level)
        m.d.sync += [ctx.dq_v[0].eq(u3["v"] & (ctx.bw_layer >= 2)), ctx.dq_last[0].eq(u3["last"]),
                     ctx.dq_pre[0].eq(u3["pre"])]
        for n in range(1, len(ctx.dq_v)):
            m.d.sync += [ctx.dq_v[n].eq(ctx.dq_v[n - 1]), ctx.dq_last[n].eq(ctx.dq_last[n - 1]),
                         ctx.dq_pre[n].eq(ctx.dq_pre[n - 1])]
        with m.If(ctx.dq_v[-1]):
            total = Signal(signed(p.disp_bits))
            m.d.comb += total.eq(ctx.disp_acc + dsp.term)
            with m.If(ctx.dq_last[-1]):
                pre = ctx.dq_pre[-1]
                disp_w = ctx.disp[1]
                m.d.comb += [disp_w.addr.eq(pre >> p.lg), disp_w.en.eq(1 << ctx.lane_of(pre))]
                m.d.comb += [disp_w.data[q].eq(total) for q in range(P)]
                m.d.sync += ctx.disp_acc.eq(0)
            with m.Else():
                m.d.sync += ctx.disp_acc.eq(total)
        # dropout bits leave the hash pipelines into ``keep``
        if ctx.dropout:
            with m.If(ctx.kp_v[-1]):
                bits = Cat(*((h.o >> 24)[:8] >= p.cfg.drop8 for h in ctx.hash))
                m.d.comb += [ctx.keep[1].addr.eq(ctx.kp_word[-1]), ctx.keep[1].data.eq(bits), ctx.keep[1].en.eq(1)]

    # ---------------------------------------------------------------- quantisation (§9.5, §9.6)
    def _quantise_states(self, m, ctx, stage):
        p = self.params
        blocks = p.stage_blocks(stage)
        passes = (0, 1, 2) if p.cfg.error_norm == "l2" else (0, 2)
        source = ctx.unpooled[0] if p.under_pool(stage) else ctx.disp[0]
        with m.State(f"Q_PASS_{stage}"):
            m.d.comb += [source.addr.eq(ctx.q_word), ctx.time[stage][0].addr.eq(ctx.q_word)]
            m.d.sync += [ctx.q_v.eq(1), ctx.q_w.eq(ctx.q_word), ctx.q_word.eq(ctx.q_word + 1)]
            with m.If(ctx.q_word == blocks - 1):
                m.next = f"Q_PASS_DRAIN_{stage}"
        with m.State(f"Q_PASS_DRAIN_{stage}"):
            # L2Normaliser's shift is out the cycle after its last words: this one
            with m.If(~ctx.q_v):
                m.d.sync += ctx.q_word.eq(0)
                with m.Switch(ctx.q_pass):
                    with m.Case(0):
                        m.d.sync += [ctx.q_pass.eq(passes[1]), ctx.norm_shift.eq(0), ctx.any_sign.eq(0)]
                        m.next = f"Q_PASS_{stage}"
                    with m.Case(1):
                        m.d.sync += [ctx.q_pass.eq(2), ctx.norm_shift.eq(ctx.norm.shift)]
                        m.next = f"Q_PASS_{stage}"
                    with m.Default():
                        with m.If(ctx.any_sign):
                            self._start_layer_update(m, ctx, stage)
                        with m.Else():
                            m.next = "OUT"

    def _quantise_stage(self, m, ctx):
        p = self.params
        if p.L < 2:
            return
        P = p.P
        lv = ctx.lvl
        d = Signal(ctx.lanes(signed(p.disp_bits)))     # the stage's D word (routed through pooling, §9.4)
        for stage in p.quantised_stages:
            with m.If(ctx.q_v & (ctx.q_stage == stage)):
                source = ctx.unpooled[0] if p.under_pool(stage) else ctx.disp[0]
                m.d.comb += ctx.each(d, source.data) + ctx.each(lv.time, ctx.time[stage][0].data)
        m.d.comb += ctx.each(lv.d, d)
        m.d.comb += [lv.top_length.eq(ctx.top_length), lv.norm_shift.eq(ctx.norm_shift),
                     ctx.norm.counted.eq(lv.counted), ctx.norm.first.eq(ctx.q_w == 0)]
        m.d.comb += ctx.each(ctx.norm.offset, lv.offset)       # the normaliser's port may be wider
        with m.If(ctx.q_v):
            with m.Switch(ctx.q_pass):
                with m.Case(0):
                    with m.If(lv.length_max > ctx.top_length):
                        m.d.sync += ctx.top_length.eq(lv.length_max)
                    ctx.emit(StidiDebugKind.DISP, ctx.q_stage, 0, ctx.q_w << p.lg, value=[d[q] for q in range(P)])
                with m.Case(1):
                    pass                                  # L2Normaliser sums (its inputs above)
                with m.Case(2):
                    err_w = ctx.err[1]
                    m.d.comb += [err_w.addr.eq(ctx.q_w), err_w.en.eq(1)]
                    m.d.comb += ctx.each(err_w.data.sign, lv.sign) + ctx.each(err_w.data.level, lv.level)
                    with m.If(Cat(*(lv.sign[q] != 0 for q in range(P))).any()):
                        m.d.sync += ctx.any_sign.eq(1)
                    ctx.emit(StidiDebugKind.LEVEL, ctx.q_stage, 0, ctx.q_w << p.lg,
                           value=[lv.sign[q] for q in range(P)], aux=[lv.level[q] for q in range(P)])


class _Context:
    """Everything the phase sections of ``StidiCore.elaborate`` share: parts, memories (read, write
    port pairs), registers, and a few derived constants."""

    def __init__(self, p: StidiCoreParams):
        self.p = p
        cfg = p.cfg
        self.dropout = cfg.drop8 > 0 and p.L >= 2
        self.membrane_bits = signed_bits((p.max_fan_in + 1) * (p.T - 1))
        # R above the step's width (time bits + Q + 1) gives a zero step: clamp there
        self.max_lr_shift = p.time_bits + cfg.levels + 1
        self.err_layout = data.StructLayout({
            "sign": data.ArrayLayout(signed(2), p.P),
            "level": data.ArrayLayout(range(cfg.levels + 1), p.P),
        })
        self.all_lanes = Const((1 << p.P) - 1, p.P)
        self.wl = {s: l for l, s in enumerate(p.weight_stages, start=1)}   # stage -> weight layer 1..L

    def lanes(self, shape):
        return data.ArrayLayout(shape, self.p.P)

    def each(self, target, source):
        """Lane-by-lane assignment of two P-lane arrays. Whole-view assignment would copy raw bits,
        which misaligns the lanes when the two components size their elements differently."""
        return [target[q].eq(source[q]) for q in range(self.p.P)]

    def lane_of(self, index):
        """The lane (low ``lg`` bits) of a neuron index."""
        return index[:self.p.lg] if self.p.lg else Const(0, 1)

    def pick(self, word, index):
        """Lane ``lane_of(index)`` of a P-lane word, as a mux tree (a variable part-select of a word
        whose lanes are not a power of two wide becomes a multiplier in Yosys)."""
        if self.p.P == 1:
            return word[0]
        return Array(word[q] for q in range(self.p.P))[self.lane_of(index)]

    def threshold(self, stage):
        """Theta of weight stage ``stage`` at U's width: a Theta above every reachable U stays unreachable."""
        top = (1 << (self.membrane_bits - 1)) - 1
        return Const(min(self.p.thresholds[self.wl[stage] - 1], top), signed(self.membrane_bits))
