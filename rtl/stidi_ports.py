"""The STiDi-BP core's memories and what its phases (rtl/stidi_*.py) share: the memory table, the
phases' signature members and the lane helpers.

The core (rtl/stidi_core.py) owns every memory of ``memory_table`` and joins the phases' ports to
it by name (rtl/phase_ports.py). Stages are the golden model's (0 = input); ``time<x>`` is stage
x's, ``w<l>`` and ``s<l>`` are weight layer l's (the host's layer l - 1). Several phases write some
of these memories (the forward phases ``time<x>``, the update phases ``w<l>``/``s<l>``, the targets and
the quantisation ``err``); the phases run one after another, so the OR of their ports is the port
of the one that runs.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, signed, unsigned

from .phase_ports import MemoryShape, Phase, debug_emitter, memory_members, on_start
from .stidi_params import StidiCoreParams

__all__ = ["memory_table", "StidiPhase", "StagePass", "lane_of", "pick", "each", "block_index", "advance_position",
           "enter_stage", "lowest_set", "live_lanes"]


def memory_table(p: StidiCoreParams):
    """Every memory the core shares between phases, by name (``phase_ports.MemoryShape``)."""
    table = {}
    for s, l in p.weight_layer.items():
        table[f"w{l}"] = MemoryShape(p.lanes(signed(p.cfg.weight_bits)), p.w_depth(l))   # latent weights
        table[f"s{l}"] = MemoryShape(unsigned(p.P), p.w_depth(l))                         # their sign plane
    for x in range(p.top + 1):
        table[f"time{x}"] = MemoryShape(p.lanes(unsigned(p.time_bits)), p.stage_blocks(x), granular=True)
    table["u_out"] = MemoryShape(p.lanes(signed(p.membrane_bits)), p.stage_blocks(p.top) * p.T)   # U(t) per block
    table["err"] = MemoryShape(p.err_layout, max(p.stage_blocks(s) for s in p.weight_stages))
    if p.L >= 2:
        table["disp"] = MemoryShape(p.lanes(signed(p.disp_bits)), p.hidden_blocks, granular=True)
        if p.dropout:
            table["keep"] = MemoryShape(unsigned(p.P), p.hidden_blocks)
    for s in range(1, p.top + 1):
        if p.kind(s) == "pool":
            table[f"argmin{s}"] = MemoryShape(range(p.stages[s].k ** 2), p.stage_sizes[s])
    if p.unpooled_words:
        # one lane a write: the unpooling writes one neuron of a conv stage's word a cycle
        table["unpooled"] = MemoryShape(p.lanes(signed(p.disp_bits)), p.unpooled_words, granular=True)
    return table


class StidiPhase(Phase):
    """A phase of the STiDi-BP core: ``start``/``done``, the ports of the memories it reads and writes
    (``memory_table``), a debug port with ``params.debug``, and its own ``members``."""

    def __init__(self, params: StidiCoreParams, reads=(), writes=(), members=None):
        if not isinstance(params, StidiCoreParams):
            raise TypeError(f"params must be StidiCoreParams, not {params!r}")
        self.params = params
        debug = params.debug_layout if params.debug else None
        super().__init__({**memory_members(memory_table(params), reads, writes, debug), **(members or {})})

    def _debug_emitter(self, m):
        """``phase_ports.debug_emitter`` on this phase's debug port: P value and aux lanes a record."""
        return debug_emitter(m, self.debug if self.params.debug else None, self.params.P)


class StagePass(StidiPhase):
    """A phase that runs its ``stages`` in order from one ``start`` (the forward passes). A subclass
    gives ``_parts(m)`` (its lanes and registers), ``_enter(m, s)`` (go to stage s's first state, or
    raise ``done`` after the last stage), ``_stage_states(m, s)`` and ``_data_stages(m)`` (what acts on
    read data, outside the FSM and after it: where both drive a signal, the data stage wins)."""

    def elaborate(self, platform):
        m = Module()
        self._parts(m)
        self.emit = self._debug_emitter(m)
        with m.FSM():
            with on_start(m, self):
                self._enter(m, self.stages[0])
            for s in self.stages:
                self._stage_states(m, s)
        self._data_stages(m)
        return m


def lane_of(p, index):
    """The lane (low ``lg`` bits) of a neuron index."""
    return index[:p.lg] if p.lg else Const(0, 1)


def pick(p, word, index):
    """Lane ``lane_of(index)`` of a P-lane word, as a mux tree (a variable part-select of a word whose
    lanes are not a power of two wide becomes a multiplier in Yosys)."""
    if p.P == 1:
        return word[0]
    return Array(word[q] for q in range(p.P))[lane_of(p, index)]


def each(p, target, source):
    """Lane-by-lane assignment of two P-lane arrays. Whole-view assignment would copy raw bits, which
    misaligns the lanes when the two components size their elements differently."""
    return [target[q].eq(source[q]) for q in range(p.P)]


def block_index(p, q, block):
    """Neuron index of lane ``q`` of word ``block``."""
    return Cat(Const(q, p.lg), block) if p.lg else block


def advance_position(m, y, x, pos, height, width):
    """(y, x) one position on in row-major order over a ``height`` x ``width`` map, ``pos`` = y*W + x
    with it; returns 'this was the last position' (then all three start again at 0)."""
    last_x, last_y = x == width - 1, y == height - 1
    with m.If(~last_x):
        m.d.sync += [x.eq(x + 1), pos.eq(pos + 1)]
    with m.Elif(~last_y):
        m.d.sync += [x.eq(0), y.eq(y + 1), pos.eq(pos + 1)]
    with m.Else():
        m.d.sync += [x.eq(0), y.eq(0), pos.eq(0)]
    return last_x & last_y


def enter_stage(m, stage, states):
    """A phase's entry for the stage its ``start`` names: go to ``states[s]`` for ``stage`` = s."""
    with m.Switch(stage):
        for s, state in states.items():
            with m.Case(s):
                m.next = state


def lowest_set(bits):
    """Index of the lowest set bit of ``bits`` (meaningless if none is set), as a balanced mux tree
    log2(width) muxes deep: the next lane or block to serve, found in one cycle."""
    def tree(lo, size):                          # (any set, index within bits[lo:lo + size])
        if size == 1:
            return (bits[lo] if lo < len(bits) else Const(0, 1)), Const(0, 0)
        (any_low, low), (any_high, high) = tree(lo, size // 2), tree(lo + size // 2, size // 2)
        return any_low | any_high, Mux(any_low, Cat(low, Const(0, 1)), Cat(high, Const(1, 1)))
    return tree(0, 1 << max(len(bits) - 1, 0).bit_length())[1]


def live_lanes(p, word, stage):
    """The lanes of word ``word`` of ``stage`` that hold a neuron (the last word's lanes beyond the
    stage's size hold none, whatever the memory says there), as P bits."""
    last = p.stage_blocks(stage) - 1
    tail = p.stage_sizes[stage] - last * p.P
    return Mux(word == last, (1 << tail) - 1, (1 << p.P) - 1)
