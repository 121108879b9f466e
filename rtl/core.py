"""Desire-BP on-chip training datapath: one sample at a time, a sequence of phases, P adder lanes.

Architecture (docs/rtl.md has the long form):
  * every layer l has a weight memory ``W_l`` whose word holds the weights of P post neurons
    (block b = neurons b*P .. b*P+P-1) for one input i, at address b*N_{l-1} + i (block-major),
    so one presynaptic spike fetches one word per post block;
  * the phases are components with a start/done handshake, each with its own FSM, counters and
    lanes: dropout masks (rtl/desire_masks.py), forward (rtl/desire_forward.py: per step t and
    layer l a scan over the input words fills a spike list and accumulates block 0; blocks 1..
    replay the list, event-driven; then ``NeuronLanes``), result and output desire
    (rtl/desire_output.py), hidden desire for l = L..2 (rtl/desire_hidden.py: only blocks with a
    non-zero g, ``DesireLanes``) and the update (rtl/desire_update.py: per active post block the
    steps where an active lane spiked, then a read-modify-write of every spiking input's word,
    ``UpdateLanes``);
  * this file holds the parameters' memories, which the phases share (rtl/phase_ports.py: a
    read port's address is the OR of its phases', a write port has one owner), the mix32 bank of
    the masks and the stochastic rounding, and the sequencer that starts one phase after another.
All memories are ``lib.memory.Memory`` with one synchronous read and one write port (simple
dual-port block RAM). The optional debug stream (``debug=True``) reports every intermediate the
golden trace records; with ``debug=False`` none of that logic exists.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from .desire_forward import DesireForward
from .desire_hidden import DesireHidden
from .desire_masks import DesireMasks, hash_lanes
from .desire_output import DesireOutputDesire, DesireResult
from .desire_update import DesireUpdate
from .desire_params import CoreParams
from .desire_ports import DebugKind, WritePortSignature, memory_table
from .lanes import Mix32
from .memories import COLLISION_ATTR, WordMemory
from .phase_ports import any_of, join_debug, join_ports
from .skeleton import SampleLoader, WeightBank, core_members

__all__ = ["CoreParams", "DebugKind", "DesireCore"]


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

    def elaborate(self, platform):
        p = self.params
        m = Module()
        loader = m.submodules.loader = SampleLoader(pixel_count=p.sizes[0], label_layout=p.label_layout)
        wiring.connect(m, wiring.flipped(self.pixels), loader.pixels)
        wiring.connect(m, wiring.flipped(self.labels), loader.labels)
        label = loader.label

        phases = {"masks": DesireMasks(p), "forward": DesireForward(p), "result": DesireResult(p),
                  "output_desire": DesireOutputDesire(p), "update": DesireUpdate(p)}
        if p.L >= 2:
            phases["hidden_desire"] = DesireHidden(p)
        for name, phase in phases.items():
            m.submodules[name] = phase
            if "train" in phase.signature.members:
                m.d.comb += phase.train.eq(label.train)
        m.d.comb += [phases["masks"].step.eq(label.step), phases["update"].shift.eq(label.shift),
                     phases["output_desire"].label.eq(label.label)]

        busy = Signal()
        ports = self._memories(m, platform, busy)
        # the loader's writes in IDLE: each pixel as it arrives, and a zero encoder state beside it
        table = memory_table(p)
        loading = {name: WritePortSignature(table[name]).create(path=("load", name)) for name in ("pix", "vin")}
        join_ports(m, ports, phases.values(), {name: [port] for name, port in loading.items()})
        self._hash_bank(m, phases["masks"], phases["update"])
        running = {name: Signal(name=f"{name}_running") for name in phases}
        if p.debug:
            # the records of the phase that runs (they never share a cycle)
            join_debug(m, self.debug, [(running[name], phase.debug) for name, phase in phases.items()
                                       if "debug" in phase.signature.members])

        cycles, sample_cycles = Signal(32), Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(busy):
            m.d.sync += sample_cycles.eq(sample_cycles + 1)
        m.d.comb += [self.cycles.eq(cycles), self.busy.eq(busy)]
        result = phases["result"]
        m.d.comb += [self.results.payload.counts.eq(result.counts), self.results.payload.pred.eq(result.pred),
                     self.results.payload.tie.eq(result.tie), self.results.payload.cycles.eq(sample_cycles)]
        self._sequence(m, phases, running, loader, loading, busy, sample_cycles)
        return m

    def _memories(self, m, platform, busy):
        """Every shared memory (``memory_table``) with its (read, write) ports, by name."""
        p = self.params
        # On iCE40 every state memory goes into block RAM (EBR): in logic, Yosys' choice for the small
        # ones, a read is a wide multiplexer behind the controller's address decode, the UP5K's
        # longest path. Elsewhere Yosys chooses (ECP5: LUT RAM for the small ones).
        attrs = {"ram_style": "block"} if str(getattr(platform, "device", "")).startswith("iCE40") else {}
        table = memory_table(p)
        # the host's weight port whenever no sample is being processed (the phases leave W alone then)
        bank = m.submodules.weights = WeightBank(
            word_shape=table["w1"].shape,
            memories=[(p.w_depth(l), f"w{l}" in p.single_port) for l in range(1, p.L + 1)],
            registered=p.weight_read_latency == 2)
        wiring.connect(m, wiring.flipped(self.wport), bank.wport)
        m.d.comb += bank.host_enable.eq(~busy)
        ports = {}
        for name, memory in table.items():
            kind = name.rstrip("0123456789")
            if kind == "w":
                l = int(name[1:])
                ports[name] = bank.reads[l - 1], bank.writes[l - 1]
            elif kind == "x":
                # single-port (SPRAM on iCE40 UltraPlus) if ``params.single_port`` names it
                mem = WordMemory(shape=memory.shape, depth=memory.depth,
                                 kind="single" if name in p.single_port else "dual")
                m.submodules[name] = mem
                ports[name] = mem.read, mem.write
            else:
                # no phase reads a state word in the cycle it is written (checked as for WordMemory,
                # docs/synth.md §4.2): block RAM needs no read-during-write logic
                mem = m.submodules[name] = Memory(shape=memory.shape, depth=memory.depth, init=[],
                                                  attrs={**attrs, COLLISION_ATTR: "1"})
                ports[name] = mem.read_port(), mem.write_port(granularity=1 if memory.granular else None)
        return ports

    def _hash_bank(self, m, masks, update):
        """The mix32 pipelines of the step keys and dropout masks and (stochastic) the rounding offsets:
        those never overlap, and each phase drives the inputs only while it hashes."""
        users = [masks] + ([update] if "hash_in" in update.signature.members else [])
        for q in range(hash_lanes(self.params)):
            mix = m.submodules[f"hash{q}"] = Mix32()
            m.d.comb += mix.i.eq(any_of(user.hash_in[q] for user in users))
            m.d.comb += [user.hash_out[q].eq(mix.o) for user in users]
        if "round_key" in update.signature.members:
            m.d.comb += update.round_key.eq(masks.round_key)

    def _sequence(self, m, phases, running, loader, loading, busy, sample_cycles):
        """IDLE loads a sample; then each phase's ``done`` starts the next in the same cycle;
        ``running[name]`` is high while phase ``name`` runs."""
        p = self.params
        lg = p.lg
        after_output = "hidden_desire" if p.L >= 2 else "update"
        with m.FSM(name="ctrl"):
            # One cycle after reset, so the state register changes once: Icarus evaluates an
            # `always @*` block only when one of its inputs changes, and outputs decoded from a
            # never-changing state would read X.
            with m.State("START"):
                m.next = "IDLE"
            with m.State("IDLE"):
                m.d.comb += loader.idle.eq(1)
                with m.If(loader.pixel.valid):
                    index, pix, vin = loader.pixel.index, loading["pix"], loading["vin"]
                    m.d.comb += [pix.addr.eq(index >> lg), vin.addr.eq(index >> lg)]
                    m.d.comb += [pix.en.eq(1 << index[:lg] if lg else 1), vin.en.eq(1 << index[:lg] if lg else 1)]
                    m.d.comb += [pix.data[q].eq(loader.pixel.value) for q in range(p.P)]   # vin.data: 0
                with m.If(loader.start):
                    m.d.sync += [busy.eq(1), sample_cycles.eq(0)]
                    m.d.comb += phases["masks"].start.eq(1)
                    m.next = "MASKS"
            following = {"masks": "forward", "forward": "result", "output_desire": after_output,
                         "hidden_desire": "update", "update": None}
            for name, phase in phases.items():
                with m.State(name.upper()):
                    m.d.comb += running[name].eq(1)
                    with m.If(phase.done):
                        if name == "result":      # inference ends with the result
                            with m.If(loader.label.train):
                                m.d.comb += phases["output_desire"].start.eq(1)
                                m.next = "OUTPUT_DESIRE"
                            with m.Else():
                                m.next = "OUT"
                        elif following[name] is None:
                            m.next = "OUT"
                        else:
                            m.d.comb += phases[following[name]].start.eq(1)
                            m.next = following[name].upper()
            with m.State("OUT"):
                m.d.comb += self.results.valid.eq(1)
                with m.If(self.results.ready):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"

