"""The desire-BP core's first phase: the sample's hash keys and (training) its dropout masks."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..golden.desire_config import ROUNDING_SALT
from .desire_ports import DebugKind, debug_emitter, phase_members, start_state, valid_lanes
from .lanes import MIX32_STAGES

__all__ = ["hash_lanes", "DesireMasks"]

#: Cycles of one mix32 hash (``lanes.Mix32``).
MIX_LATENCY = len(MIX32_STAGES) - 1


def hash_lanes(p):
    """mix32 pipelines the core shares between this phase and the update: with stochastic rounding
    an update word needs P offsets at once; otherwise only the keys and the masks use them, and one
    lane hashes one neuron per cycle (a mask word takes P cycles, a few dozen per sample)."""
    return p.P if p.cfg.rounding == "stochastic" else 1


class DesireMasks(wiring.Component):
    """Hash keys, then dropout masks: golden ``dropout_masks``.

    ``KEY`` hashes the sample's ``step`` into the dropout key and (stochastic rounding) the rounding
    key ``round_key``, one cycle apart through the core's mix32 bank (``hash_in`` / ``hash_out``,
    ``MIX_LATENCY`` cycles). In training, ``MASK_<l>`` then hashes every neuron of each maskable
    layer l; the keep bits of a word go into ``mask<l>`` ``MIX_LATENCY`` cycles after its last
    neuron (a MASK record each), and ``DRAIN`` waits for the last word.
    """

    def __init__(self, params):
        self.params = p = params
        self.mask_layers = [l for l in range(p.L) if p.maskable(l)]
        lanes = data.ArrayLayout(unsigned(32), hash_lanes(p))
        members = phase_members(p, writes=[f"mask{l}" for l in self.mask_layers])
        members.update({"train": In(1), "step": In(32), "hash_in": Out(lanes), "hash_out": In(lanes)})
        if p.cfg.rounding == "stochastic":
            members["round_key"] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        p, cfg = self.params, self.params.cfg
        P, lg = p.P, p.lg
        stochastic = cfg.rounding == "stochastic"
        one_lane = hash_lanes(p) < P
        layers = self.mask_layers
        m = Module()
        emit = debug_emitter(m, self)

        word = Signal(range(max([p.blocks(l) for l in layers] + [len(MIX32_STAGES)]) + 1))
        lane = Signal(max(lg, 1))          # one-lane hashing: the lane of ``word`` entering this cycle
        gathered = Signal(P)                # one-lane hashing: the word's keep bits gathered so far
        drop_key = Signal(32)
        # the neuron entering the hash pipeline, carried along it: valid, word, layer index, lane
        mk_v = [Signal(name=f"mk_v{n}") for n in range(MIX_LATENCY)]
        mk_k = [Signal.like(word, name=f"mk_k{n}") for n in range(MIX_LATENCY)]
        mk_l = [Signal(range(max(len(layers), 2)), name=f"mk_l{n}") for n in range(MIX_LATENCY)]
        mk_s = [Signal.like(lane, name=f"mk_s{n}") for n in range(MIX_LATENCY)]
        m.d.sync += mk_v[0].eq(0)
        for n in range(1, MIX_LATENCY):
            m.d.sync += [mk_v[n].eq(mk_v[n - 1]), mk_k[n].eq(mk_k[n - 1]), mk_l[n].eq(mk_l[n - 1]),
                         mk_s[n].eq(mk_s[n - 1])]

        with m.FSM():
            start_state(m)
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += word.eq(0)
                    m.next = "KEY"
            with m.State("KEY"):
                # step is stable from here on: the dropout key enters lane 0 at word = 0, the rounding
                # key (stochastic rounding only) at word = 1; each is out MIX_LATENCY cycles later
                m.d.comb += self.hash_in[0].eq(Mux(word == 0, Const(cfg.seed, 32) ^ self.step,
                                                   Const(cfg.seed ^ ROUNDING_SALT, 32) ^ self.step))
                with m.If(word == MIX_LATENCY):
                    m.d.sync += drop_key.eq(self.hash_out[0])
                if stochastic:
                    with m.If(word == MIX_LATENCY + 1):
                        m.d.sync += self.round_key.eq(self.hash_out[0])
                with m.If(word == MIX_LATENCY + stochastic):
                    m.d.sync += word.eq(0)
                    if layers:
                        with m.If(self.train):
                            m.next = f"MASK_{layers[0]}"
                        with m.Else():
                            m.d.comb += self.done.eq(1)
                            m.next = "IDLE"
                    else:
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                with m.Else():
                    m.d.sync += word.eq(word + 1)
            for idx, ml in enumerate(layers):
                with m.State(f"MASK_{ml}"):
                    # word (one-lane hashing: its lane) enters the hash pipeline
                    for q in range(hash_lanes(p)):
                        n = Cat(lane[:lg] if one_lane else Const(q, lg), word) if lg else word
                        m.d.comb += self.hash_in[q].eq(drop_key ^ (ml << 16) ^ n)
                    m.d.sync += [mk_v[0].eq(1), mk_k[0].eq(word), mk_l[0].eq(idx), mk_s[0].eq(lane)]
                    with m.If(~((lane == P - 1) if one_lane else Const(1))):
                        m.d.sync += lane.eq(lane + 1)
                    with m.Elif(word == p.blocks(ml) - 1):
                        m.d.sync += [word.eq(0), lane.eq(0)]
                        m.next = f"MASK_{layers[idx + 1]}" if idx + 1 < len(layers) else "DRAIN"
                    with m.Else():
                        m.d.sync += [word.eq(word + 1), lane.eq(0)]
            with m.State("DRAIN"):
                # the last mask word is written in this cycle at the latest (the forward pass reads it)
                with m.If(~Cat(0, *mk_v[:-1]).any()):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # hashes left the pipeline -> keep bits; a complete word into its layer's mask memory
        with m.If(mk_v[-1]):
            for idx, ml in enumerate(layers):
                with m.If(mk_l[-1] == idx):
                    bits = [(self.hash_out[q] >> 16)[:16] < cfg.keep_threshold(ml) for q in range(hash_lanes(p))]
                    if one_lane:
                        keep, complete = gathered | (bits[0] << mk_s[-1][:lg])[:P], mk_s[-1] == P - 1
                    else:
                        keep, complete = Cat(*bits), Const(1)
                    with m.If(complete):
                        keep_word = keep & valid_lanes(p, ml, mk_k[-1])
                        port = getattr(self, f"mask{ml}_write")
                        m.d.comb += [port.addr.eq(mk_k[-1]), port.data.eq(keep_word), port.en.eq(1)]
                        emit(DebugKind.MASK, ml, 0, mk_k[-1] << lg, aux=[keep_word[q] for q in range(P)])
                        m.d.sync += gathered.eq(0)
                    with m.Else():
                        m.d.sync += gathered.eq(keep)
        return m
