"""Binarized STiDi-BP training core: fully connected topologies, and conv/pooling maps under fully
connected layers (issue #11; conv topologies at P = 1).

One sample at a time, one stage at a time, P lanes; bit-exact against the integer golden model
``mfsnn.golden.stidi_fixed`` (the bit-level spec is docs/golden-spec-stidi.md, cited as §n). Stages
are the golden model's (0 = input, one per topology token).

The core composes the shared skeleton (``SampleLoader``, ``WeightBank``, ``DebugTap``: rtl/skeleton.py)
and the phases, each a component with a start/done handshake and its own FSM, counters and lanes:

* ``IDLE`` (here): pixels -> ``EncoderRom`` -> ``time0`` (§4); the host may use ``wport``;
* ``StidiMapForward`` (rtl/stidi_map_forward.py): the conv and pooling stages' forward pass (§5, §6);
* ``StidiFcForward`` (rtl/stidi_forward.py): the fc stages' forward pass (§5);
* ``StidiDecision``, ``StidiTargets`` (rtl/stidi_decision.py): the decision (§7), in training the
  targets and ternary output error (§8); no error -> done;
* per weight stage l from the top (§9): ``StidiPrep`` (rtl/stidi_prep.py: D of the stage below
  cleared, its dropout bits drawn; l >= 2), then ``StidiFcUpdate`` (rtl/stidi_update.py) or
  ``StidiConvUpdate`` (rtl/stidi_conv_update.py), then for l >= 2 ``StidiUnpool`` (below a pooling
  stage, rtl/stidi_conv_update.py) and ``StidiQuantise`` (rtl/stidi_quantise.py) of the stage
  below; no nonzero error -> done;
* ``OUT`` (here): the result beat (prediction, output spike times, cycles).

This file holds the memories more than one phase uses (rtl/stidi_ports.py: ``memory_table``; the
phases' ports are joined by name, rtl/phase_ports.py) and the sequencer, which starts the next phase
in the cycle in which the last one raises ``done``. Nothing multiplies two data values: ±1 weights
are sign bits, power-of-two errors are shifts, addresses advance by adding constants.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from .phase_ports import WritePortSignature, debug_emitter, debug_member, join_debug, join_ports
from .skeleton import SampleLoader, WeightBank, core_members
from .stidi_conv_update import StidiConvUpdate, StidiUnpool
from .stidi_decision import StidiDecision, StidiTargets
from .stidi_forward import StidiFcForward
from .stidi_lanes import EncoderRom
from .stidi_map_forward import StidiMapForward
from .stidi_params import StidiCoreParams, StidiDebugKind
from .stidi_ports import memory_table
from .stidi_prep import StidiPrep
from .stidi_quantise import StidiQuantise
from .stidi_update import StidiFcUpdate

__all__ = ["StidiCoreParams", "StidiDebugKind", "StidiCore"]


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

    def elaborate(self, platform):
        p = self.params
        m = Module()
        loader = m.submodules.loader = SampleLoader(pixel_count=p.n_pixels, label_layout=p.label_layout)
        wiring.connect(m, wiring.flipped(self.pixels), loader.pixels)
        wiring.connect(m, wiring.flipped(self.labels), loader.labels)
        label = loader.label
        phases = self._phases()
        for name, phase in phases.items():
            m.submodules[name] = phase
            members = phase.signature.members
            for member, value in (("label", label.label), ("train", label.train), ("step", label.step),
                                  ("lr_shift", label.lr_shift)):
                if member in members:
                    m.d.comb += getattr(phase, member).eq(value)
        decision, targets = phases["decision"], phases["targets"]
        m.d.comb += [targets.pred.eq(decision.pred), targets.case.eq(decision.case),
                     targets.t_min.eq(decision.t_min), targets.t_max.eq(decision.t_max)]

        busy, sample_cycles, cycles = Signal(), Signal(32), Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(busy):
            m.d.sync += sample_cycles.eq(sample_cycles + 1)
        m.d.comb += [self.cycles.eq(cycles), self.busy.eq(busy)]
        ports = self._memories(m, busy)
        loading, encode_debug = self._loading(m, loader, busy)
        running = {name: Signal(name=f"{name}_running") for name in phases}
        join_ports(m, ports, phases.values(), loading, {phase: running[name] for name, phase in phases.items()})
        if p.debug:
            # the records of the phase that runs and of the encoder (they never share a cycle)
            taps = [(running[name], phase.debug) for name, phase in phases.items()] + [encode_debug]
            join_debug(m, self.debug, taps)
        m.d.comb += [self.results.payload.pred.eq(decision.pred), self.results.payload.times.eq(decision.times),
                     self.results.payload.cycles.eq(sample_cycles)]
        _Sequencer(p, phases, running).build(m, loader, self.results, busy, sample_cycles)
        return m

    def _phases(self):
        """The phase components this topology needs, by name (the sequencer's state is the name)."""
        p = self.params
        phases = {}
        kinds = {p.kind(s) for s in range(1, p.top + 1)}
        if kinds - {"fc"}:
            phases["map_forward"] = StidiMapForward(p)
        if "fc" in kinds:
            phases["fc_forward"] = StidiFcForward(p)
        phases["decision"] = StidiDecision(p)
        phases["targets"] = StidiTargets(p)
        if p.L >= 2:
            phases["prep"] = StidiPrep(p)
            phases["quantise"] = StidiQuantise(p)
        if "fc" in kinds:
            phases["fc_update"] = StidiFcUpdate(p)
        if p.is_conv:
            phases["conv_update"] = StidiConvUpdate(p)
            if p.unpooled_words:
                phases["unpool"] = StidiUnpool(p)
        return phases

    def _memories(self, m, busy):
        """Every shared memory (``memory_table``) with its (read, write) ports, by name; the weights are
        the ``WeightBank``'s, which gives the host's ``wport`` access while the core is idle."""
        p = self.params
        table = memory_table(p)
        bank = m.submodules.weights = WeightBank(word_shape=table["w1"].shape,
                                                 memories=[(p.w_depth(l), False) for l in range(1, p.L + 1)])
        wiring.connect(m, wiring.flipped(self.wport), bank.wport)
        m.d.comb += bank.host_enable.eq(~busy)
        ports = {}
        for name, memory in table.items():
            if name.startswith("w"):
                l = int(name[1:])
                ports[name] = bank.reads[l - 1], bank.writes[l - 1]
                continue
            mem = m.submodules[name] = Memory(shape=memory.shape, depth=memory.depth, init=[])
            write = mem.write_port(granularity=1 if memory.granular else None)
            # a conv layer's displacement is a scatter-add (ScatterAdd): its read sees the write before
            transparent = name == "disp" and p.is_conv
            ports[name] = mem.read_port(transparent_for=(write,) if transparent else ()), write
        return ports

    def _loading(self, m, loader, busy):
        """The core's own writes, in IDLE: a pixel beat's spike time (``EncoderRom``, latency 1) into its
        lane of ``time0`` (an ENCODE record), and a host write of latent weights (only while idle, as
        ``WeightBank`` takes them) also into the sign plane: its MSBs. Returns the write ports by
        memory name and the encoder's (on, debug tap)."""
        p = self.params
        table = memory_table(p)
        enc = m.submodules.enc = EncoderRom(lanes=1, time_steps=p.T)
        m.d.comb += enc.pixel[0].eq(loader.pixel.value)
        enc_v, enc_index = Signal(), Signal.like(loader.pixel.index)
        m.d.sync += [enc_v.eq(loader.pixel.valid), enc_index.eq(loader.pixel.index)]
        time0 = WritePortSignature(table["time0"]).create(path=("load", "time0"))
        encode_debug = debug_member(p.debug_layout).signature.create(path=("encode",)) if p.debug else None
        with m.If(enc_v):
            m.d.comb += [time0.addr.eq(enc_index >> p.lg), time0.en.eq(1 << (enc_index[:p.lg] if p.lg else 0))]
            m.d.comb += [time0.data[q].eq(enc.time[0]) for q in range(p.P)]
            debug_emitter(m, encode_debug, p.P)(StidiDebugKind.ENCODE, 0, 0, enc_index, value=[enc.time[0]])
        writes = {"time0": [time0]}
        host = self.wport
        for l in range(1, p.L + 1):
            sign = WritePortSignature(table[f"s{l}"]).create(path=("host", f"s{l}"))
            with m.If(~busy & host.we & (host.layer == l - 1)):
                msbs = Cat(*(host.wdata[(k + 1) * p.cfg.weight_bits - 1] for k in range(p.P)))
                m.d.comb += [sign.addr.eq(host.addr), sign.data.eq(msbs), sign.en.eq(1)]
            writes[f"s{l}"] = [sign]
        return writes, (enc_v, encode_debug)


class _Sequencer:
    """The controller: IDLE loads a sample; then each phase's ``done`` starts the next in the same
    cycle; ``running[name]`` is high while phase ``name`` runs."""

    def __init__(self, p, phases, running):
        self.p, self.phases, self.running = p, phases, running

    def _begin(self, m, name, stage=None):
        """Start phase ``name`` (for ``stage``) in this cycle; its state follows."""
        phase = self.phases[name]
        m.d.comb += phase.start.eq(1)
        if stage is not None:
            m.d.comb += phase.stage.eq(stage)
        m.next = name.upper() if stage is None else f"{name.upper()}_{stage}"

    def _state(self, m, name):
        """In a sequencer state of phase ``name``: it runs; the returned ``If`` acts on its ``done``."""
        m.d.comb += self.running[name].eq(1)
        return m.If(self.phases[name].done)

    def _update(self, s):
        """The phase that updates weight stage ``s``."""
        return "fc_update" if self.p.kind(s) == "fc" else "conv_update"

    def _begin_update(self, m, s):
        """The backward pass of weight stage ``s``: its preparation first if it sends D down."""
        self._begin(m, "prep" if s >= 2 else self._update(s), s)

    def build(self, m, loader, results, busy, sample_cycles):
        p, phases = self.p, self.phases
        forward = [name for name in ("map_forward", "fc_forward") if name in phases]
        with m.FSM(name="ctrl"):
            with m.State("START"):          # one cycle after reset (see rtl/phase_ports.py: start_state)
                m.next = "IDLE"
            with m.State("IDLE"):
                m.d.comb += loader.idle.eq(1)
                with m.If(loader.start):
                    m.d.sync += [busy.eq(1), sample_cycles.eq(0)]
                    self._begin(m, forward[0])
            for name, following in zip(forward, forward[1:] + ["decision"]):
                with m.State(name.upper()), self._state(m, name):
                    self._begin(m, following)
            with m.State("DECISION"), self._state(m, "decision"):
                with m.If(loader.label.train):
                    self._begin(m, "targets")
                with m.Else():
                    m.next = "OUT"
            with m.State("TARGETS"), self._state(m, "targets"):
                with m.If(phases["targets"].any_error):
                    self._begin_update(m, p.top)
                with m.Else():
                    m.next = "OUT"
            for s in reversed(p.weight_stages):
                self._backward_states(m, s)
            with m.State("OUT"):
                m.d.comb += results.valid.eq(1)
                with m.If(results.ready):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"

    def _backward_states(self, m, s):
        """Weight stage ``s``'s update; for s >= 2 before it the preparation, after it the routing of
        D through a pooling stage below (§9.4) and the quantisation of the weight stage below, whose
        update follows if it has a nonzero error."""
        update, pooled = self._update(s), s >= 2 and self.p.kind(s - 1) == "pool"
        if s >= 2:
            with m.State(f"PREP_{s}"), self._state(m, "prep"):
                self._begin(m, update, s)
        with m.State(f"{update.upper()}_{s}"), self._state(m, update):
            if s < 2:
                m.next = "OUT"
            else:
                self._begin(m, "unpool" if pooled else "quantise", s - 1)
        if s < 2:
            return
        below = s - 2 if pooled else s - 1
        if pooled:
            with m.State(f"UNPOOL_{s - 1}"), self._state(m, "unpool"):
                self._begin(m, "quantise", below)
        with m.State(f"QUANTISE_{below}"), self._state(m, "quantise"):
            with m.If(self.phases["quantise"].any_sign):
                self._begin_update(m, below)
            with m.Else():
                m.next = "OUT"
