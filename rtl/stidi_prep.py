"""The STiDi-BP core's preparation of a weight stage's update: the displacement it sends down starts at
0, and the stage below draws its dropout bits (§10.3)."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib.wiring import In

from .lanes import Mix32
from .phase_ports import on_start
from .stidi_ports import StidiPhase, block_index, enter_stage

__all__ = ["StidiPrep"]


class StidiPrep(StidiPhase):
    """Before the update of weight stage l >= 2 (``stage``, with ``start``):

    * ``BW_KEY`` (dropout, the first update of a sample, l = top): key = mix32(SEED ^ ``step``), one
      hash per sample, ``Mix32.latency`` cycles;
    * ``BW_PREP_l``: per word of stage l-1, D = 0 into ``disp`` and (dropout) the word's P neuron
      indices into the mix32 lanes, whose keep bits go into ``keep`` ``Mix32.latency`` cycles later;
    * ``BW_PREP_DRAIN_l`` waits for the last keep word.
    """

    def __init__(self, params):
        p = params
        self.stages = [s for s in p.weight_stages if s >= 2]
        super().__init__(p, writes=["disp"] + (["keep"] if p.dropout else []), members={
            "stage": In(range(p.top + 1)), "step": In(32)})

    def elaborate(self, platform):
        p = self.params
        m = Module()
        hashes = [Mix32() for _ in range(p.P)] if p.dropout else []
        for q, mix in enumerate(hashes):
            m.submodules[f"hash{q}"] = mix
        word = Signal(range(p.hidden_blocks))
        key_wait = Signal(range(Mix32.latency + 1))
        drop_key = Signal(32)
        # the word whose hashes are in the pipeline, carried along it
        kp_v = [Signal(name=f"kp_v{n}") for n in range(Mix32.latency)]
        kp_word = [Signal.like(word, name=f"kp_word{n}") for n in range(Mix32.latency)]
        m.d.sync += kp_v[0].eq(0)
        for n in range(1, Mix32.latency):
            m.d.sync += [kp_v[n].eq(kp_v[n - 1]), kp_word[n].eq(kp_word[n - 1])]

        with m.FSM():
            with on_start(m, self):
                m.d.sync += [word.eq(0), key_wait.eq(0)]
                # the key first: the top stage's update is a sample's first
                enter_stage(m, self.stage, {s: "BW_KEY" if p.dropout and s == p.top else f"BW_PREP_{s}"
                                            for s in self.stages})
            if p.dropout:
                with m.State("BW_KEY"):
                    m.d.comb += hashes[0].i.eq(Const(p.cfg.seed, 32) ^ self.step)
                    m.d.sync += [key_wait.eq(key_wait + 1), drop_key.eq(hashes[0].o)]
                    with m.If(key_wait == Mix32.latency):
                        m.next = f"BW_PREP_{p.top}"
            for s in self.stages:
                below = s - 1
                with m.State(f"BW_PREP_{s}"):
                    disp_w = self.disp_write
                    m.d.comb += [disp_w.addr.eq(word), disp_w.en.eq((1 << p.P) - 1)]
                    m.d.comb += [disp_w.data[q].eq(0) for q in range(p.P)]
                    for q, mix in enumerate(hashes):
                        m.d.comb += mix.i.eq(drop_key ^ (below << 16) ^ block_index(p, q, word))
                    if hashes:
                        m.d.sync += [kp_v[0].eq(1), kp_word[0].eq(word)]
                    m.d.sync += word.eq(word + 1)
                    with m.If(word == p.stage_blocks(below) - 1):
                        m.next = f"BW_PREP_DRAIN_{s}"
                with m.State(f"BW_PREP_DRAIN_{s}"):
                    with m.If(~Cat(*kp_v).any()):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"

        # the keep bits leave the hash pipelines into ``keep``
        if hashes:
            with m.If(kp_v[-1]):
                bits = Cat(*((mix.o >> 24)[:8] >= p.cfg.drop8 for mix in hashes))
                m.d.comb += [self.keep_write.addr.eq(kp_word[-1]), self.keep_write.data.eq(bits),
                             self.keep_write.en.eq(1)]
        return m
