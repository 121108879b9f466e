"""Binarized STiDi-BP training core for fully connected topologies (issue #11, FC part).

One sample at a time, one layer at a time, P lanes; bit-exact against the integer golden model
``mfsnn.golden.stidi_fixed`` (the bit-level spec is docs/golden-spec-stidi.md, cited as §n). It is
composed of the shared skeleton (``SampleLoader``, ``WeightBank``, ``DebugTap``: rtl/skeleton.py) and
the tested STiDi lanes (rtl/stidi_lanes.py); this file holds only the sequencer.

Memories (``b`` = block of P post neurons, ``i`` = pre neuron; word address ``b*N_{l-1} + i`` as in the
desire core, lane k = post neuron ``b*P + k``, so one pre spike selects one word per post block):

* ``W_l`` latent weights (``WeightBank``: P x s``WBITS`` per word, the host's ``wport`` while idle);
* ``S_l`` the forward sign plane, P bits per word at the same addresses: the MSB of every latent
  weight. The forward pass reads only these bits. The sign plane follows every host write to ``W_l``
  and every weight the update writes (§9.2), so it always equals the latent weights' MSBs;
* ``time_l`` spike times of stage l (0 = the input), P per word; ``head``/``next`` the per-step spike
  lists of the stage being read; ``u_out`` the output layer's membrane U(t) for the decision (§7);
* ``err`` the (sign, level) error of the layer being updated, ``disp`` the displacement D of the
  stage below, ``keep`` its dropout bits (§10.3): shared by all layers, one layer is live at a time.

Phases (FSM state prefixes; each owns its counters):

* ``IDLE``: pixels -> ``EncoderRom`` -> ``time_0`` (§4); the host may use ``wport``.
* ``FW_*`` forward (§5), per layer: clear the step lists (T cycles), link every pre that spikes
  before T-1 into the list of its step (N_{l-1} cycles), then per post block b and step t walk the
  step's list, fetching one sign word per spike (``SignAccumulateLanes``), and integrate
  (``IntegrateLanes``): about blocks_l x (T + spiking pres) cycles.
* ``DEC_*`` decision (§7): the output times (min, max, index-first argmin, ties) and the largest
  U(m) among the earliest, one output neuron per cycle.
* ``TGT`` targets and the ternary output error (§8), per output block; all zero -> done.
* ``BW_*`` backward (§9), per layer from the top: dropout bits of the pre stage (``Mix32``), then per
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

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..golden.stidi import (StidiConfig, build_stages, default_thresholds, parse_stidi_topology,
                            weight_layers)
from ..golden.stidi_fixed import NORM_GUARD
from .lanes import Mix32
from .skeleton import DebugTap, SampleLoader, WeightBank, WeightPortSignature
from .stidi_lanes import (DisplacementLanes, EncoderRom, ErrorLevelLanes, FcUpdateLanes, IntegrateLanes,
                          L2Normaliser, SignAccumulateLanes, signed_bits)

__all__ = ["StidiCoreParams", "StidiDebugKind", "StidiCore"]


class StidiDebugKind:
    """Record kinds of the debug stream (``kind`` field); ``n`` is the first neuron of the record."""
    ENCODE = 1     # value[0] = spike time of input n (stage 0)
    STEP = 2       # layer l, step t: value[k] = U after step t, aux[k] = I after step t's arrivals
    TIMES = 3      # layer l: value[k] = spike time (T = silent)
    DECISION = 4   # value[0] = prediction (§7), aux[0] = target case 1..5 (§8, training only)
    TARGET = 5     # value[k] = target time, aux[k] = ternary output error d
    DISP = 6       # stage m: value[k] = displacement D arriving at m (before the clip rule)
    LEVEL = 7      # stage m: value[k] = error sign, aux[k] = level


def _pow2(n):
    return n >= 1 and n & (n - 1) == 0


@dataclass(frozen=True)
class StidiCoreParams:
    """Hardware shape of a STiDi-BP core: the golden ``StidiConfig`` (fully connected, integer,
    binary forward, ternary output error), parallelism P (a power of two) and the debug tap.

    ``input_size`` (None: the topology's own, 784 or 196) gives a flat input of any size: the golden
    topology syntax only takes image inputs, so a small test network such as 16-12-4 is a config
    of ``784-12-4`` with ``input_size=16`` (``StidiCoreParams.flat``). It then needs explicit
    ``thresholds`` (the defaults are for image inputs); the checker runs the golden model on the
    same flat input.
    """
    cfg: StidiConfig
    parallelism: int = 1
    debug: bool = False
    input_size: int | None = None

    def __post_init__(self):
        cfg = self.cfg
        if not isinstance(cfg, StidiConfig):
            raise TypeError(f"cfg must be a StidiConfig, not {cfg!r}")
        if cfg.arith != "fixed":
            raise ValueError(f"StidiCore implements the integer model: arith must be 'fixed', not {cfg.arith!r}")
        if cfg.forward != "binary":
            raise ValueError(f"StidiCore has 1-bit forward weights: forward must be 'binary', not {cfg.forward!r}")
        topology = parse_stidi_topology(cfg.topology)
        if topology.is_conv:
            raise ValueError(f"StidiCore supports fully connected topologies only for now; "
                             f"{cfg.topology!r} has conv/pool layers")
        if cfg.output_levels != 0:
            raise ValueError(f"StidiCore builds the ternary output error only: output_levels must be 0, "
                             f"not {cfg.output_levels}")
        try:
            p = operator.index(self.parallelism)
        except TypeError:
            raise TypeError(f"parallelism must be an integer, not {self.parallelism!r}") from None
        if not _pow2(p) or p > 256:
            raise ValueError(f"parallelism must be a power of two in 1..256, not {self.parallelism!r}")
        if not isinstance(self.debug, bool):
            raise TypeError(f"debug must be a bool, not {self.debug!r}")
        if self.input_size is not None:
            try:
                n = operator.index(self.input_size)
            except TypeError:
                raise TypeError(f"input_size must be an integer or None, not {self.input_size!r}") from None
            if n < 1:
                raise ValueError(f"input_size must be >= 1, not {n}")
            if n != topology.input_shape[0] and cfg.thresholds is None:
                raise ValueError(f"input_size {n} replaces the topology's {topology.input_shape[0]} inputs: "
                                 f"give cfg.thresholds (the defaults are for image inputs)")
        if cfg.drop8 and max(self.sizes[1:-1], default=0) > 1 << 16:
            raise ValueError("dropout hashes hidden neuron indices below 2**16 (§10.3): a hidden layer is larger")

    @classmethod
    def flat(cls, sizes, *, parallelism=1, debug=False, **options):
        """A core for layer sizes ``(N0, N1, ..., NL)`` with a flat input of N0 pixels (test networks
        such as 16-12-4); ``options`` are ``StidiConfig`` fields (``thresholds`` is required)."""
        sizes = tuple(operator.index(n) for n in sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs an input and an output layer, not {sizes!r}")
        cfg = StidiConfig(topology="-".join(map(str, (784,) + sizes[1:])), **options)
        return cls(cfg, parallelism, debug, sizes[0])

    # ---------------------------------------------------------------- shape
    @property
    def topology(self):
        """The network as text, with the real input size (e.g. ``16-12-4``)."""
        return "-".join(map(str, self.sizes))

    @property
    def sizes(self):
        """Neurons per stage, (N0, N1, ..., NL)."""
        topology = parse_stidi_topology(self.cfg.topology)
        n0 = topology.input_shape[0] if self.input_size is None else self.input_size
        if len(topology.input_shape) == 3:
            n0 = topology.n_pixels if self.input_size is None else self.input_size
        return (n0,) + tuple(layer[1] for layer in topology.layers)

    @property
    def L(self):
        return len(self.sizes) - 1

    @property
    def P(self):
        return self.parallelism

    @property
    def lg(self):
        return ceil_log2(self.parallelism)

    @property
    def T(self):
        return self.cfg.time_steps

    @property
    def time_bits(self):
        return self.T.bit_length()          # times 0 .. T (T = silent)

    def blocks(self, stage):
        """Words of P neurons of stage ``stage`` (0 = input)."""
        return -(-self.sizes[stage] // self.P)

    def w_depth(self, layer):
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
        stages = build_stages(parse_stidi_topology(self.cfg.topology))
        return default_thresholds(stages, self.cfg)

    @property
    def max_fan_in(self):
        return max(self.sizes[:-1])

    @property
    def disp_bits(self):
        """Width of D: |D_j| <= N_l * 2**(WBITS-1) << lvl_max, lvl 0 from the ternary output error."""
        q, wb = self.cfg.levels, self.cfg.weight_bits
        bounds = [self.sizes[l] << (wb - 1 + (0 if l == self.L else q)) for l in range(2, self.L + 1)]
        return signed_bits(max(bounds, default=1))

    @property
    def hidden_blocks(self):
        return max([self.blocks(m) for m in range(1, self.L)], default=1)

    # ---------------------------------------------------------------- stream layouts
    @property
    def label_layout(self):
        """label; train (0 = inference); step (global training-sample counter, dropout key §10.3);
        lr_shift[l-1] = R of weight layer l for this sample's epoch (§9.1 schedule, host side)."""
        return data.StructLayout({
            "label": unsigned(max(ceil_log2(self.sizes[-1]), 1)),
            "train": 1,
            "step": unsigned(32),
            "lr_shift": data.ArrayLayout(unsigned(8), self.L),
        })

    @property
    def result_layout(self):
        """pred (§7), the output spike times, cycles from start to result (pixel loading excluded)."""
        return data.StructLayout({
            "pred": unsigned(max(ceil_log2(self.sizes[-1]), 1)),
            "times": data.ArrayLayout(unsigned(self.time_bits), self.sizes[-1]),
            "cycles": unsigned(32),
        })

    @property
    def debug_value_bits(self):
        fan = self.max_fan_in + 1
        return max(signed_bits(fan * (self.T - 1)), self.disp_bits, self.time_bits + 1,
                   max(ceil_log2(self.sizes[-1]), 1) + 1)

    @property
    def debug_aux_bits(self):
        return max(signed_bits(self.max_fan_in + 1), (self.cfg.levels + 1).bit_length() + 1, 4)

    @property
    def debug_layout(self):
        return data.StructLayout({
            "kind": unsigned(4),
            "layer": unsigned(4),
            "t": unsigned(self.time_bits),
            "n": unsigned(max(self.sizes).bit_length()),
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
        members = {
            "pixels": In(stream.Signature(unsigned(8))),
            "labels": In(stream.Signature(params.label_layout)),
            "results": Out(stream.Signature(params.result_layout)),
            "wport": In(WeightPortSignature(layers=params.L, addr_bits=params.addr_bits,
                                            word_bits=params.P * params.cfg.weight_bits)),
            "cycles": Out(unsigned(32)),
            "busy": Out(1),
        }
        if params.debug:
            members["debug"] = Out(wiring.Signature({"valid": Out(1), "payload": Out(params.debug_layout)}))
        super().__init__(members)

    # ==============================================================================================
    def elaborate(self, platform):
        p = self.params
        m = Module()
        c = _Context(p)
        self._build_parts(m, c)
        self._build_registers(m, c)
        with m.FSM(name="ctrl"):
            with m.State("START"):          # one cycle after reset (see rtl/core.py: Icarus and X)
                m.next = "IDLE"
            self._idle_states(m, c)
            for l in range(1, p.L + 1):
                self._forward_states(m, c, l)
            self._decision_states(m, c)
            for l in range(p.L, 0, -1):
                self._backward_states(m, c, l)
            for stage in range(p.L - 1, 0, -1):
                self._quantise_states(m, c, stage)
            with m.State("OUT"):
                m.d.comb += self.results.valid.eq(1)
                with m.If(self.results.ready):
                    m.d.sync += c.busy.eq(0)
                    m.next = "IDLE"
        # data-arrival stages: they act on read data one or more cycles after a state issued the
        # read, so they sit outside the FSM (and after it: their port assignments win)
        self._host_sign_writes(m, c)
        self._encode_stage(m, c)
        self._list_stage(m, c)
        self._decision_stages(m, c)
        self._update_stages(m, c)
        self._quantise_stage(m, c)
        return m

    # ---------------------------------------------------------------- parts
    def _build_parts(self, m, c):
        p = self.params
        P, L, N, T, TB = p.P, p.L, p.sizes, p.T, p.time_bits
        cfg = p.cfg

        def memory(name, shape, depth, granular=False):
            mem = Memory(shape=shape, depth=max(depth, 2), init=[])
            m.submodules[name] = mem
            return mem.read_port(), mem.write_port(granularity=1 if granular else None)

        c.loader = m.submodules.loader = SampleLoader(pixel_count=N[0], label_layout=p.label_layout)
        wiring.connect(m, wiring.flipped(self.pixels), c.loader.pixels)
        wiring.connect(m, wiring.flipped(self.labels), c.loader.labels)
        c.bank = m.submodules.weights = WeightBank(
            word_shape=c.lanes(signed(cfg.weight_bits)),
            memories=[(p.w_depth(l), False) for l in range(1, L + 1)])
        wiring.connect(m, wiring.flipped(self.wport), c.bank.wport)

        # forward sign plane and spike times
        c.sign = {l: memory(f"s{l}", unsigned(P), p.w_depth(l)) for l in range(1, L + 1)}
        c.time = {x: memory(f"time{x}", c.lanes(unsigned(TB)), p.blocks(x), granular=True) for x in range(L + 1)}
        # per-step spike lists of the stage being read: head[t] -> next[i] -> ... -> NIL
        c.nil = p.max_fan_in
        pointer = unsigned(c.nil.bit_length())
        c.head = memory("head", pointer, T)
        c.next = memory("next", pointer, p.max_fan_in)
        c.u_out = memory("u_out", c.lanes(signed(c.membrane_bits)), p.blocks(L) * T)
        # backward: error of the layer being updated, displacement and dropout bits of the stage below
        c.err = memory("err", c.err_layout, max(p.blocks(l) for l in range(1, L + 1)))
        if L >= 2:
            c.disp = memory("disp", c.lanes(signed(p.disp_bits)), p.hidden_blocks, granular=True)
            if c.dropout:
                c.keep = memory("keep", unsigned(P), p.hidden_blocks)

        c.enc = m.submodules.enc = EncoderRom(lanes=1, time_steps=T)
        c.acc = m.submodules.sign_acc = SignAccumulateLanes(lanes=P, fan_in=p.max_fan_in)
        c.integ = m.submodules.integrate = IntegrateLanes(lanes=P, fan_in=p.max_fan_in + 1, time_steps=T)
        c.upd = m.submodules.update = FcUpdateLanes(lanes=P, weight_bits=cfg.weight_bits, levels=cfg.levels,
                                                    max_lr_shift=c.max_lr_shift, time_steps=T)
        if L >= 2:
            c.dsp = m.submodules.displace = DisplacementLanes(lanes=P, weight_bits=cfg.weight_bits,
                                                              levels=cfg.levels, time_steps=T)
            c.norm = m.submodules.l2 = L2Normaliser(lanes=P, words=max(N[1:-1]),
                                                    offset_bits=signed_bits(p.disp_bits), guard=NORM_GUARD)
            c.lvl = m.submodules.levels = ErrorLevelLanes(lanes=P, d_bits=p.disp_bits, levels=cfg.levels,
                                                          max_norm_shift=c.norm.max_shift, time_steps=T)
        if c.dropout:
            c.hash = [Mix32() for _ in range(P)]
            for q, h in enumerate(c.hash):
                m.submodules[f"hash{q}"] = h
        c.emit = DebugTap(m, self.debug if p.debug else None).emit

    # ---------------------------------------------------------------- registers
    def _build_registers(self, m, c):
        p = self.params
        P, L, N, T = p.P, p.L, p.sizes, p.T
        c.busy = Signal()
        m.d.comb += self.busy.eq(c.busy)
        cycle = Signal(32)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += self.cycles.eq(cycle)
        c.sample_cycles = Signal(32)
        with m.If(c.busy):
            m.d.sync += c.sample_cycles.eq(c.sample_cycles + 1)
        m.d.comb += c.bank.host_enable.eq(~c.busy)
        label = c.loader.label
        c.label, c.train, c.step = label.label, label.train, label.step
        # R per layer from the label beat; any R above the step's width gives step 0, as the clamp does
        c.lr_shift = {l: Mux(label.lr_shift[l - 1] > c.max_lr_shift, c.max_lr_shift, label.lr_shift[l - 1])
                      for l in range(1, L + 1)}

        # results
        c.pred = Signal(self.results.payload.pred.shape())
        c.out_times = Signal(data.ArrayLayout(unsigned(p.time_bits), N[-1]))
        m.d.comb += [self.results.payload.pred.eq(c.pred), self.results.payload.times.eq(c.out_times),
                     self.results.payload.cycles.eq(c.sample_cycles)]

        # forward
        c.fw_block = Signal(range(max(p.blocks(l) for l in range(1, L + 1))))
        c.fw_step = Signal(range(T))
        c.fw_pre = Signal(range(p.max_fan_in))
        c.fw_layer = Signal(range(L + 1))
        c.sign_base = Signal(p.addr_bits + 1)         # b * N_{l-1}: block b's sign words
        c.u_base = Signal(range(p.blocks(L) * T + 1))  # b * T: block b's membranes in u_out
        c.walk_first = Signal()                       # the walk's pointer comes from head (else next)
        c.sign_valid = Signal()                       # a sign word arrives this cycle
        c.cur_i = Signal(c.integ.i.shape())
        c.cur_u = Signal(c.integ.u.shape())
        c.cur_t = Signal(c.integ.t_fire.shape())
        c.delta = Signal(c.acc.delta.shape())
        # list build pipeline: time word read (lst), head read (ins), head/next write (prev = last write)
        c.lst_v, c.lst_pre = Signal(), Signal.like(c.fw_pre)
        c.ins_v, c.ins_pre, c.ins_t = Signal(), Signal.like(c.fw_pre), Signal(range(T + 1))
        c.prev_v, c.prev_pre, c.prev_t = Signal(), Signal.like(c.fw_pre), Signal(range(T + 1))

        # decision and targets
        c.dec_k = Signal(range(N[-1]))
        c.dec_base = Signal.like(c.u_base)
        c.scan_v, c.scan_k = Signal(), Signal.like(c.dec_k)
        c.pick_v, c.pick_k = Signal(), Signal.like(c.dec_k)
        c.t_min, c.t_max, c.t_label = Signal(range(T + 1)), Signal(range(T + 1)), Signal(range(T + 1))
        c.first_min = Signal.like(c.dec_k)           # index-first argmin
        c.tied = Signal()                            # more than one output at t_min
        c.best_u = Signal(signed(c.membrane_bits))
        c.have_best = Signal()
        c.tgt_block = Signal(range(p.blocks(L)))
        c.tgt_v, c.tgt_b = Signal(), Signal.like(c.tgt_block)
        c.any_error = Signal()
        c.case = Signal(range(6))                    # §8 branch 1..5, from the decision's summary

        # backward
        c.bw_layer = Signal(range(L + 1))
        c.bw_pre = Signal(range(p.max_fan_in))
        c.bw_block = Signal(range(max(p.blocks(l) for l in range(1, L + 1))))
        c.w_base = Signal(p.addr_bits + 1)           # b * N_{l-1}
        c.t_pre = Signal(range(T + 1))
        c.prep_word = Signal(range(p.hidden_blocks))
        c.key_wait = Signal(range(Mix32.latency + 1))
        c.drop_key = Signal(32)
        lat = Mix32.latency
        c.kp_v = [Signal(name=f"kp_v{n}") for n in range(lat)]
        c.kp_word = [Signal.like(c.prep_word, name=f"kp_word{n}") for n in range(lat)]
        m.d.sync += c.kp_v[0].eq(0)
        for n in range(1, lat):
            m.d.sync += [c.kp_v[n].eq(c.kp_v[n - 1]), c.kp_word[n].eq(c.kp_word[n - 1])]
        # update pipeline: u1 = read data arrives (FcUpdateLanes in), u2, u3 = its new word out
        def stage(name):
            return {"v": Signal(name=f"{name}_v"), "addr": Signal(p.addr_bits, name=f"{name}_addr"),
                    "last": Signal(name=f"{name}_last"), "pre": Signal.like(c.bw_pre, name=f"{name}_pre"),
                    "t_pre": Signal(range(T + 1), name=f"{name}_t_pre"),
                    "t_post": Signal(c.lanes(unsigned(p.time_bits)), name=f"{name}_t_post"),
                    "err": Signal(c.err_layout, name=f"{name}_err")}
        c.u1, c.u2, c.u3 = stage("u1"), stage("u2"), stage("u3")
        m.d.sync += c.u1["v"].eq(0)
        # displacement pipeline control (DisplacementLanes' latency after u3)
        dlat = c.dsp.latency if L >= 2 else 0
        c.dq_v = [Signal(name=f"dq_v{n}") for n in range(dlat)]
        c.dq_last = [Signal(name=f"dq_last{n}") for n in range(dlat)]
        c.dq_pre = [Signal.like(c.bw_pre, name=f"dq_pre{n}") for n in range(dlat)]
        c.disp_acc = Signal(signed(p.disp_bits))

        # quantisation
        c.q_word = Signal(range(p.hidden_blocks))
        c.q_stage = Signal(range(L + 1))
        c.q_pass = Signal(2)                         # 0 largest leading one, 1 L2 norm, 2 levels
        c.q_v, c.q_w = Signal(), Signal.like(c.q_word)
        c.top_length = Signal(range(p.disp_bits + 1))
        c.norm_shift = Signal(range(c.norm.max_shift + 1)) if L >= 2 else None
        c.any_sign = Signal()

        # the pipelines' valid bits are set by the states that issue reads, cleared otherwise
        m.d.sync += [c.lst_v.eq(0), c.scan_v.eq(0), c.pick_v.eq(0), c.tgt_v.eq(0), c.q_v.eq(0),
                     c.sign_valid.eq(0)]

    # ---------------------------------------------------------------- IDLE and encoding
    def _idle_states(self, m, c):
        with m.State("IDLE"):
            m.d.comb += c.loader.idle.eq(1)
            m.d.comb += c.enc.pixel[0].eq(c.loader.pixel.value)
            with m.If(c.loader.start):
                m.d.sync += [c.busy.eq(1), c.sample_cycles.eq(0)]
                self._start_layer(m, c, 1)

    def _host_sign_writes(self, m, c):
        """A host write of latent weights (only while idle, as ``WeightBank`` takes them) also writes
        their MSBs into the sign plane."""
        p = self.params
        wp = self.wport
        for l in range(1, p.L + 1):
            with m.If(~c.busy & wp.we & (wp.layer == l - 1)):
                msbs = Cat(*(wp.wdata[(k + 1) * p.cfg.weight_bits - 1] for k in range(p.P)))
                m.d.comb += [c.sign[l][1].addr.eq(wp.addr), c.sign[l][1].data.eq(msbs), c.sign[l][1].en.eq(1)]

    def _encode_stage(self, m, c):
        """A pixel beat's spike time (``EncoderRom``, latency 1) into its lane of ``time_0``."""
        p = self.params
        enc_v, enc_index = Signal(), Signal.like(c.loader.pixel.index)
        m.d.sync += [enc_v.eq(c.loader.pixel.valid), enc_index.eq(c.loader.pixel.index)]
        with m.If(enc_v):
            write = c.time[0][1]
            m.d.comb += [write.addr.eq(enc_index >> p.lg), write.en.eq(1 << c.lane_of(enc_index))]
            m.d.comb += [write.data[q].eq(c.enc.time[0]) for q in range(p.P)]
            c.emit(StidiDebugKind.ENCODE, 0, 0, enc_index, value=[c.enc.time[0]])

    # ---------------------------------------------------------------- forward (§5)
    def _start_layer(self, m, c, l):
        """Go to the forward pass of layer ``l``: clear its step lists first."""
        m.d.sync += [c.fw_step.eq(0), c.fw_layer.eq(l)]
        m.next = f"FW_CLEAR_{l}"

    def _forward_states(self, m, c, l):
        p = self.params
        T, n_in, blocks = p.T, p.sizes[l - 1], p.blocks(l)
        head_r, head_w = c.head
        next_r = c.next[0]
        sign_r = c.sign[l][0]

        with m.State(f"FW_CLEAR_{l}"):
            # every step's list starts empty
            m.d.comb += [head_w.addr.eq(c.fw_step), head_w.data.eq(c.nil), head_w.en.eq(1)]
            m.d.sync += c.fw_step.eq(c.fw_step + 1)
            with m.If(c.fw_step == T - 1):
                m.d.sync += [c.fw_step.eq(0), c.fw_pre.eq(0)]
                m.next = f"FW_LIST_{l}"

        with m.State(f"FW_LIST_{l}"):
            # read pre i's spike time; the list stage links it into its step's list
            m.d.comb += c.time[l - 1][0].addr.eq(c.fw_pre >> p.lg)
            m.d.sync += [c.lst_v.eq(1), c.lst_pre.eq(c.fw_pre), c.fw_pre.eq(c.fw_pre + 1)]
            with m.If(c.fw_pre == n_in - 1):
                m.next = f"FW_LIST_DRAIN_{l}"

        with m.State(f"FW_LIST_DRAIN_{l}"):
            # the last head/next write happens in the last cycle with ins_v
            with m.If(~c.lst_v & ~c.ins_v):
                m.d.comb += head_r.addr.eq(0)
                m.d.sync += [c.fw_block.eq(0), c.sign_base.eq(0), c.u_base.eq(0), c.fw_step.eq(0)]
                self._clear_neurons(m, c)
                m.next = f"FW_WALK_{l}"

        with m.State(f"FW_WALK_{l}"):
            # one list entry per cycle: fetch its sign word and the next pointer; at the list's end
            # (NIL) step t of the block's P neurons integrates, and the next step's head is read
            pointer = Mux(c.walk_first, head_r.data, next_r.data)
            m.d.sync += c.walk_first.eq(0)
            m.d.comb += [c.acc.spike.eq(c.sign_valid), c.acc.negative.eq(sign_r.data), c.acc.delta.eq(c.delta)]
            with m.If(pointer != c.nil):
                m.d.comb += [next_r.addr.eq(pointer), sign_r.addr.eq(c.sign_base + pointer)]
                m.d.sync += [c.sign_valid.eq(1), c.delta.eq(c.acc.delta_next)]
            with m.Else():
                integ = c.integ
                m.d.comb += [integ.i.eq(c.cur_i), integ.u.eq(c.cur_u), integ.t_fire.eq(c.cur_t),
                             integ.delta.eq(c.acc.delta_next), integ.t.eq(c.fw_step),
                             integ.threshold.eq(c.threshold(l))]
                m.d.sync += [c.cur_i.eq(integ.i_next), c.cur_u.eq(integ.u_next), c.cur_t.eq(integ.t_fire_next),
                             c.delta.eq(0), c.walk_first.eq(1)]
                c.emit(StidiDebugKind.STEP, l, c.fw_step, c.fw_block << p.lg,
                       value=[integ.u_next[q] for q in range(p.P)], aux=[integ.i_next[q] for q in range(p.P)])
                if l == p.L:
                    u_w = c.u_out[1]
                    m.d.comb += [u_w.addr.eq(c.u_base + c.fw_step), u_w.data.eq(integ.u_next), u_w.en.eq(1)]
                with m.If(c.fw_step == T - 1):
                    m.next = f"FW_BLOCK_END_{l}"
                with m.Else():
                    m.d.comb += head_r.addr.eq(c.fw_step + 1)
                    m.d.sync += c.fw_step.eq(c.fw_step + 1)

        with m.State(f"FW_BLOCK_END_{l}"):
            time_w = c.time[l][1]
            m.d.comb += [time_w.addr.eq(c.fw_block), time_w.data.eq(c.cur_t), time_w.en.eq(c.all_lanes)]
            c.emit(StidiDebugKind.TIMES, l, 0, c.fw_block << p.lg, value=[c.cur_t[q] for q in range(p.P)])
            self._clear_neurons(m, c)
            m.d.sync += c.fw_step.eq(0)
            with m.If(c.fw_block == blocks - 1):
                if l < p.L:
                    self._start_layer(m, c, l + 1)
                else:
                    m.d.sync += c.dec_k.eq(0)
                    m.next = "DEC_SCAN"
            with m.Else():
                m.d.comb += head_r.addr.eq(0)
                m.d.sync += [c.fw_block.eq(c.fw_block + 1), c.sign_base.eq(c.sign_base + n_in),
                             c.u_base.eq(c.u_base + T)]
                m.next = f"FW_WALK_{l}"

    def _clear_neurons(self, m, c):
        p = self.params
        m.d.sync += [c.cur_i.eq(0), c.cur_u.eq(0), c.delta.eq(0), c.walk_first.eq(1)]
        m.d.sync += [c.cur_t[q].eq(p.T) for q in range(p.P)]

    def _list_stage(self, m, c):
        """Spike-list build: pre i's time arrived -> read the head of its step (if it spikes before T-1:
        a later spike cannot change a membrane, §5); one cycle later i becomes the head and points at
        the old head. Only the write of the cycle before can be missing from that read (the memory is
        not transparent), and it is forwarded."""
        p = self.params
        head_r, head_w = c.head
        next_w = c.next[1]
        m.d.sync += [c.ins_v.eq(0), c.prev_v.eq(c.ins_v), c.prev_pre.eq(c.ins_pre), c.prev_t.eq(c.ins_t)]
        for l in range(1, p.L + 1):
            with m.If(c.lst_v & (c.fw_layer == l)):
                t = c.pick(c.time[l - 1][0].data, c.lst_pre)
                with m.If(t < p.T - 1):
                    m.d.comb += head_r.addr.eq(t)
                    m.d.sync += [c.ins_v.eq(1), c.ins_pre.eq(c.lst_pre), c.ins_t.eq(t)]
        with m.If(c.ins_v):
            old = Mux(c.prev_v & (c.prev_t == c.ins_t), c.prev_pre, head_r.data)
            m.d.comb += [head_w.addr.eq(c.ins_t), head_w.data.eq(c.ins_pre), head_w.en.eq(1),
                         next_w.addr.eq(c.ins_pre), next_w.data.eq(old), next_w.en.eq(1)]

    # ---------------------------------------------------------------- decision (§7) and targets (§8)
    def _decision_states(self, m, c):
        p = self.params
        P, L, T, n_out = p.P, p.L, p.T, p.sizes[-1]
        time_r = c.time[L][0]

        with m.State("DEC_SCAN"):
            # output neuron k's time -> min, max, index-first argmin, ties, the label's time
            m.d.comb += time_r.addr.eq(c.dec_k >> p.lg)
            m.d.sync += [c.scan_v.eq(1), c.scan_k.eq(c.dec_k), c.dec_k.eq(c.dec_k + 1)]
            with m.If(c.dec_k == n_out - 1):
                m.next = "DEC_SCAN_DRAIN"
        with m.State("DEC_SCAN_DRAIN"):
            with m.If(~c.scan_v):
                m.d.sync += [c.dec_k.eq(0), c.dec_base.eq(0), c.have_best.eq(0)]
                m.next = "DEC_PICK"

        with m.State("DEC_PICK"):
            # output neuron k's time and U(min(m, T-1)) -> the largest U among the earliest
            step = Mux(c.t_min == T, T - 1, c.t_min)
            m.d.comb += [time_r.addr.eq(c.dec_k >> p.lg), c.u_out[0].addr.eq(c.dec_base + step)]
            m.d.sync += [c.pick_v.eq(1), c.pick_k.eq(c.dec_k), c.dec_k.eq(c.dec_k + 1)]
            if P > 1:
                with m.If(c.lane_of(c.dec_k) == P - 1):
                    m.d.sync += c.dec_base.eq(c.dec_base + T)
            else:
                m.d.sync += c.dec_base.eq(c.dec_base + T)
            with m.If(c.dec_k == n_out - 1):
                m.next = "DEC_PICK_DRAIN"
        with m.State("DEC_PICK_DRAIN"):
            with m.If(~c.pick_v):
                m.next = "DEC_DONE"

        with m.State("DEC_DONE"):
            c.emit(StidiDebugKind.DECISION, L, 0, 0, value=[c.pred], aux=[c.case])
            with m.If(c.train):
                m.d.sync += [c.tgt_block.eq(0), c.any_error.eq(0)]
                m.next = "TGT"
            with m.Else():
                m.next = "OUT"

        with m.State("TGT"):
            m.d.comb += time_r.addr.eq(c.tgt_block)
            m.d.sync += [c.tgt_v.eq(1), c.tgt_b.eq(c.tgt_block), c.tgt_block.eq(c.tgt_block + 1)]
            with m.If(c.tgt_block == p.blocks(L) - 1):
                m.next = "TGT_DRAIN"
        with m.State("TGT_DRAIN"):
            with m.If(~c.tgt_v):
                with m.If(c.any_error):
                    self._start_backward(m, c)
                with m.Else():
                    m.next = "OUT"

    def _decision_stages(self, m, c):
        p = self.params
        P, L, T, n_out = p.P, p.L, p.T, p.sizes[-1]
        time_r = c.time[L][0]
        cfg = p.cfg

        with m.If(c.scan_v):
            t = c.pick(time_r.data, c.scan_k)
            with m.Switch(c.scan_k):
                for k in range(n_out):
                    with m.Case(k):
                        m.d.sync += c.out_times[k].eq(t)
            with m.If(c.scan_k == c.label):
                m.d.sync += c.t_label.eq(t)
            with m.If((c.scan_k == 0) | (t < c.t_min)):
                m.d.sync += [c.t_min.eq(t), c.first_min.eq(c.scan_k), c.tied.eq(0)]
            with m.Elif(t == c.t_min):
                m.d.sync += c.tied.eq(1)
            with m.If((c.scan_k == 0) | (t > c.t_max)):
                m.d.sync += c.t_max.eq(t)

        with m.If(c.pick_v):
            t = c.pick(time_r.data, c.pick_k)
            u = c.pick(c.u_out[0].data, c.pick_k)
            candidate = (c.t_min == T) | (t == c.t_min)
            with m.If(candidate & (~c.have_best | (u > c.best_u))):     # strict: ties keep the lower index
                m.d.sync += [c.best_u.eq(u), c.pred.eq(c.pick_k), c.have_best.eq(1)]

        # the §8 case from the scan's summary (pred is the vwin of case 5: the same rule, §7)
        case = c.case
        label_first = c.first_min == c.label
        with m.If(c.t_min == T):
            m.d.comb += case.eq(1)
        with m.Elif(label_first & ~c.tied):
            m.d.comb += case.eq(2)
        with m.Elif(label_first):
            m.d.comb += case.eq(3)
        with m.Elif((c.t_min == c.t_max) | (c.t_label == c.t_min)):
            m.d.comb += case.eq(4)
        with m.Else():
            m.d.comb += case.eq(5)

        with m.If(c.tgt_v):
            early = Signal(range(T + 1))             # max(m - NEG, 0): the label's target
            late = Signal(range(T + 1))              # min(m + ADD, T) (cases 3, 4) or min(m + ADD, M) (5)
            m.d.comb += early.eq(Mux(c.t_min > cfg.neg, c.t_min - cfg.neg, 0))
            bound = Mux(case == 5, c.t_max, T)
            m.d.comb += late.eq(Mux(c.t_min + cfg.add > bound, bound, c.t_min + cfg.add))
            words = time_r.data
            err_w = c.err[1]
            signs, targets = [], []
            for q in range(P):
                k = Cat(Const(q, p.lg), c.tgt_b) if p.lg else c.tgt_b
                t = words[q]
                is_label, is_winner = k == c.label, k == c.pred
                target = Signal(range(T + 1), name=f"target_{q}")
                with m.Switch(case):
                    with m.Case(1):
                        m.d.comb += target.eq(Mux(is_label, T - cfg.add, T))
                    with m.Case(3, 4):
                        m.d.comb += target.eq(Mux(is_label, early, Mux(t == c.t_min, late, t)))
                    with m.Case(5):
                        m.d.comb += target.eq(Mux(is_label, early, Mux(is_winner, late, t)))
                    with m.Default():
                        m.d.comb += target.eq(t)
                real = k < n_out
                d = Mux(real & (target > t), 1, Mux(real & (target < t), -1, 0))
                signs.append(d)
                targets.append(target)
                m.d.comb += [err_w.data.sign[q].eq(d), err_w.data.level[q].eq(0)]
            m.d.comb += [err_w.addr.eq(c.tgt_b), err_w.en.eq(1)]
            with m.If(Cat(*(s != 0 for s in signs)).any()):
                m.d.sync += c.any_error.eq(1)
            c.emit(StidiDebugKind.TARGET, L, 0, c.tgt_b << p.lg, value=targets, aux=signs)

    # ---------------------------------------------------------------- backward (§9)
    def _start_backward(self, m, c):
        p = self.params
        if c.dropout and p.L >= 2:
            m.d.sync += c.key_wait.eq(0)
            m.next = "BW_KEY"
        else:
            self._start_layer_update(m, c, p.L)

    def _start_layer_update(self, m, c, l):
        m.d.sync += [c.bw_layer.eq(l), c.prep_word.eq(0), c.bw_pre.eq(0)]
        m.next = f"BW_PREP_{l}" if l >= 2 else f"BW_PRE_{l}"

    def _backward_states(self, m, c, l):
        p = self.params
        P, T, n_in, blocks = p.P, p.T, p.sizes[l - 1], p.blocks(l)
        if l == p.L and c.dropout and p.L >= 2:
            with m.State("BW_KEY"):
                # key = mix32(SEED ^ step): one hash per sample (§10.3)
                m.d.comb += c.hash[0].i.eq(Const(p.cfg.seed, 32) ^ c.step)
                m.d.sync += [c.key_wait.eq(c.key_wait + 1), c.drop_key.eq(c.hash[0].o)]
                with m.If(c.key_wait == Mix32.latency):
                    self._start_layer_update(m, c, l)

        if l >= 2:
            stage = l - 1
            with m.State(f"BW_PREP_{l}"):
                # D of the stage below starts at 0; its dropout bits enter the hash pipelines
                disp_w = c.disp[1]
                m.d.comb += [disp_w.addr.eq(c.prep_word), disp_w.en.eq(c.all_lanes)]
                m.d.comb += [disp_w.data[q].eq(0) for q in range(P)]
                if c.dropout:
                    for q in range(P):
                        index = Cat(Const(q, p.lg), c.prep_word) if p.lg else c.prep_word
                        m.d.comb += c.hash[q].i.eq(c.drop_key ^ (stage << 16) ^ index)
                    m.d.sync += [c.kp_v[0].eq(1), c.kp_word[0].eq(c.prep_word)]
                m.d.sync += c.prep_word.eq(c.prep_word + 1)
                with m.If(c.prep_word == p.blocks(stage) - 1):
                    m.next = f"BW_PREP_DRAIN_{l}"
            with m.State(f"BW_PREP_DRAIN_{l}"):
                with m.If(~Cat(*c.kp_v).any()):
                    m.next = f"BW_PRE_{l}"

        def next_pre():
            with m.If(c.bw_pre == n_in - 1):
                m.next = f"BW_DRAIN_{l}"
            with m.Else():
                m.d.sync += c.bw_pre.eq(c.bw_pre + 1)
                m.next = f"BW_PRE_{l}"

        with m.State(f"BW_PRE_{l}"):
            m.d.comb += c.time[l - 1][0].addr.eq(c.bw_pre >> p.lg)
            if c.dropout and l >= 2:
                m.d.comb += c.keep[0].addr.eq(c.bw_pre >> p.lg)
            m.next = f"BW_PRE_EX_{l}"
        with m.State(f"BW_PRE_EX_{l}"):
            # eligible pre: fired, not dropped; layer 1 also skips inputs at T-1 as the golden
            # fc_backward does (their step to any post is 0 unless the post is silent)
            t = c.pick(c.time[l - 1][0].data, c.bw_pre)
            eligible = t < (T if l >= 2 else T - 1)
            if c.dropout and l >= 2:
                eligible &= c.keep[0].data.bit_select(c.lane_of(c.bw_pre), 1)
            with m.If(eligible):
                m.d.sync += [c.t_pre.eq(t), c.bw_block.eq(0), c.w_base.eq(0)]
                m.next = f"BW_BLOCK_{l}"
            with m.Else():
                next_pre()
        with m.State(f"BW_BLOCK_{l}"):
            # read W_l[b, j], the block's error and post times; the update stages do the rest
            m.d.comb += [c.bank.reads[l - 1].addr.eq(c.w_base + c.bw_pre), c.err[0].addr.eq(c.bw_block),
                         c.time[l][0].addr.eq(c.bw_block)]
            u1 = c.u1
            m.d.sync += [u1["v"].eq(1), u1["addr"].eq(c.w_base + c.bw_pre), u1["last"].eq(c.bw_block == blocks - 1),
                         u1["pre"].eq(c.bw_pre), u1["t_pre"].eq(c.t_pre)]
            with m.If(c.bw_block == blocks - 1):
                next_pre()
            with m.Else():
                m.d.sync += [c.bw_block.eq(c.bw_block + 1), c.w_base.eq(c.w_base + n_in)]
        with m.State(f"BW_DRAIN_{l}"):
            busy = c.u1["v"] | c.u2["v"] | c.u3["v"] | Cat(*c.dq_v).any()
            with m.If(~busy):
                if l >= 2:
                    m.d.sync += [c.q_word.eq(0), c.q_stage.eq(l - 1), c.q_pass.eq(0), c.top_length.eq(0)]
                    m.next = f"Q_PASS_{l - 1}"
                else:
                    m.next = "OUT"

    def _update_stages(self, m, c):
        """The read-modify-write of one weight word per cycle: u1 read data -> ``FcUpdateLanes`` ->
        u3 new word -> W_l, S_l and ``DisplacementLanes`` -> D_j summed over the post blocks."""
        p = self.params
        P, L = p.P, p.L
        u1, u2, u3 = c.u1, c.u2, c.u3
        # u1: the words of W_l, err and the post times arrive -> FcUpdateLanes (registered inside);
        # the error and post times travel on beside it for DisplacementLanes
        for l in range(1, L + 1):
            with m.If(u1["v"] & (c.bw_layer == l)):
                m.d.comb += [c.upd.w.eq(c.bank.reads[l - 1].data), c.upd.lr_shift.eq(c.lr_shift[l])]
                m.d.comb += [c.upd.t_pre[q].eq(u1["t_pre"]) for q in range(P)]
                m.d.comb += [c.upd.t_post.eq(c.time[l][0].data), c.upd.keep.eq(c.all_lanes),
                             c.upd.sign.eq(c.err[0].data.sign), c.upd.level.eq(c.err[0].data.level)]
                m.d.sync += [u2["t_post"].eq(c.time[l][0].data), u2["err"].eq(c.err[0].data)]
        m.d.sync += [u2[key].eq(u1[key]) for key in ("v", "addr", "last", "pre", "t_pre")]
        m.d.sync += [u3[key].eq(u2[key]) for key in u2]
        for l in range(1, L + 1):
            with m.If(u3["v"] & (c.bw_layer == l)):
                write = c.bank.writes[l - 1]
                m.d.comb += [write.addr.eq(u3["addr"]), write.data.eq(c.upd.w_next), write.en.eq(1)]
                sign_w = c.sign[l][1]
                m.d.comb += [sign_w.addr.eq(u3["addr"]), sign_w.data.eq(c.upd.negative), sign_w.en.eq(1)]
        if L < 2:
            return
        dsp = c.dsp
        m.d.comb += [dsp.w.eq(c.upd.w_next), dsp.t_post.eq(u3["t_post"]), dsp.sign.eq(u3["err"].sign),
                     dsp.level.eq(u3["err"].level), dsp.t_pre.eq(u3["t_pre"]), dsp.keep.eq(1)]
        m.d.sync += [c.dq_v[0].eq(u3["v"] & (c.bw_layer >= 2)), c.dq_last[0].eq(u3["last"]),
                     c.dq_pre[0].eq(u3["pre"])]
        for n in range(1, len(c.dq_v)):
            m.d.sync += [c.dq_v[n].eq(c.dq_v[n - 1]), c.dq_last[n].eq(c.dq_last[n - 1]),
                         c.dq_pre[n].eq(c.dq_pre[n - 1])]
        with m.If(c.dq_v[-1]):
            total = Signal(signed(p.disp_bits))
            m.d.comb += total.eq(c.disp_acc + dsp.term)
            with m.If(c.dq_last[-1]):
                pre = c.dq_pre[-1]
                disp_w = c.disp[1]
                m.d.comb += [disp_w.addr.eq(pre >> p.lg), disp_w.en.eq(1 << c.lane_of(pre))]
                m.d.comb += [disp_w.data[q].eq(total) for q in range(P)]
                m.d.sync += c.disp_acc.eq(0)
            with m.Else():
                m.d.sync += c.disp_acc.eq(total)
        # dropout bits leave the hash pipelines into ``keep``
        if c.dropout:
            with m.If(c.kp_v[-1]):
                bits = Cat(*((h.o >> 24)[:8] >= p.cfg.drop8 for h in c.hash))
                m.d.comb += [c.keep[1].addr.eq(c.kp_word[-1]), c.keep[1].data.eq(bits), c.keep[1].en.eq(1)]

    # ---------------------------------------------------------------- quantisation (§9.5, §9.6)
    def _quantise_states(self, m, c, stage):
        p = self.params
        blocks = p.blocks(stage)
        passes = (0, 1, 2) if p.cfg.error_norm == "l2" else (0, 2)
        with m.State(f"Q_PASS_{stage}"):
            m.d.comb += [c.disp[0].addr.eq(c.q_word), c.time[stage][0].addr.eq(c.q_word)]
            m.d.sync += [c.q_v.eq(1), c.q_w.eq(c.q_word), c.q_word.eq(c.q_word + 1)]
            with m.If(c.q_word == blocks - 1):
                m.next = f"Q_PASS_DRAIN_{stage}"
        with m.State(f"Q_PASS_DRAIN_{stage}"):
            # L2Normaliser's shift is out the cycle after its last words: this one
            with m.If(~c.q_v):
                m.d.sync += c.q_word.eq(0)
                with m.Switch(c.q_pass):
                    with m.Case(0):
                        m.d.sync += [c.q_pass.eq(passes[1]), c.norm_shift.eq(0), c.any_sign.eq(0)]
                        m.next = f"Q_PASS_{stage}"
                    with m.Case(1):
                        m.d.sync += [c.q_pass.eq(2), c.norm_shift.eq(c.norm.shift)]
                        m.next = f"Q_PASS_{stage}"
                    with m.Default():
                        with m.If(c.any_sign):
                            self._start_layer_update(m, c, stage)
                        with m.Else():
                            m.next = "OUT"

    def _quantise_stage(self, m, c):
        p = self.params
        if p.L < 2:
            return
        P = p.P
        lv = c.lvl
        for stage in range(1, p.L):
            with m.If(c.q_v & (c.q_stage == stage)):
                m.d.comb += [lv.d.eq(c.disp[0].data), lv.time.eq(c.time[stage][0].data)]
        m.d.comb += [lv.top_length.eq(c.top_length), lv.norm_shift.eq(c.norm_shift),
                     c.norm.offset.eq(lv.offset), c.norm.counted.eq(lv.counted), c.norm.first.eq(c.q_w == 0)]
        with m.If(c.q_v):
            with m.Switch(c.q_pass):
                with m.Case(0):
                    with m.If(lv.length_max > c.top_length):
                        m.d.sync += c.top_length.eq(lv.length_max)
                    c.emit(StidiDebugKind.DISP, c.q_stage, 0, c.q_w << p.lg,
                           value=[c.disp[0].data[q] for q in range(P)])
                with m.Case(1):
                    pass                                  # L2Normaliser sums (its inputs above)
                with m.Case(2):
                    err_w = c.err[1]
                    m.d.comb += [err_w.addr.eq(c.q_w), err_w.data.sign.eq(lv.sign), err_w.data.level.eq(lv.level),
                                 err_w.en.eq(1)]
                    with m.If(Cat(*(lv.sign[q] != 0 for q in range(P))).any()):
                        m.d.sync += c.any_sign.eq(1)
                    c.emit(StidiDebugKind.LEVEL, c.q_stage, 0, c.q_w << p.lg,
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

    def lanes(self, shape):
        return data.ArrayLayout(shape, self.p.P)

    def lane_of(self, index):
        """The lane (low ``lg`` bits) of a neuron index."""
        return index[:self.p.lg] if self.p.lg else Const(0, 1)

    def pick(self, word, index):
        """Lane ``lane_of(index)`` of a P-lane word, as a mux tree (a variable part-select of a word
        whose lanes are not a power of two wide becomes a multiplier in Yosys)."""
        if self.p.P == 1:
            return word[0]
        return Array(word[q] for q in range(self.p.P))[self.lane_of(index)]

    def threshold(self, l):
        """Theta of layer l at U's width: a Theta above every reachable U stays unreachable."""
        top = (1 << (self.membrane_bits - 1)) - 1
        return Const(min(self.p.thresholds[l - 1], top), signed(self.membrane_bits))
