"""How the desire-BP core's phases (rtl/desire_*.py) reach the core's state memories.

The core (rtl/core.py) owns every memory that more than one phase touches; a phase component
declares the ports it uses as members named ``<memory>_read`` / ``<memory>_write`` (``c2_read``,
``w1_write``, ...), with the memory's word shape and address width (``memory_table``). The core
connects them by name: a write port has one owner; a read port's address is the OR of its
readers' addresses (a phase drives its addresses only in the cycles it reads, and the phases run one
after the other, so at most one is non-zero) and its data goes to all of them.

A phase starts on a one-cycle ``start`` and raises ``done`` in its last cycle, in which the next phase
may start: handing over costs no cycle.
"""

from amaranth.hdl import Const, Mux, unsigned, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .skeleton import DebugTap

__all__ = ["DebugKind", "MemoryShape", "memory_table", "ReadPortSignature", "WritePortSignature",
           "phase_members", "start_state", "debug_emitter", "valid_lanes", "keep_bits"]


class DebugKind:
    """Record kinds of the debug stream (``kind`` field)."""
    MASK = 1       # aux[k] = keep bit of neuron n+k of ``layer`` (layer 0 = input)
    SCAN = 2       # value[k] = trace of input n+k of ``layer`` at step t; aux[k] = its input spike
    NEURON = 3     # value[k] = v of neuron n+k after step t; aux[k] = spike | count << 1
    DESIRE_OUT = 4  # aux[k] = care | want << 1 of output neuron n+k
    DESIRE_HID = 5  # value[0] = D_n of ``layer``; aux[0] = care | want << 1


class MemoryShape:
    """One state memory: word ``shape``, ``depth`` words, ``granular`` = one write enable per lane."""

    def __init__(self, shape, depth, granular=False):
        self.shape, self.depth, self.granular = shape, max(depth, 2), granular

    @property
    def addr_bits(self):
        return ceil_log2(self.depth)


def memory_table(p):
    """Every memory the core shares between phases, by name (layer-numbered as in docs/rtl.md)."""
    cfg, P, T = p.cfg, p.P, p.cfg.time_steps

    def lanes(shape):
        return data.ArrayLayout(shape, P)

    table = {"pix": MemoryShape(lanes(unsigned(8)), p.blocks(0), granular=True),
             "vin": MemoryShape(lanes(unsigned((2 * cfg.pixel_max - 1).bit_length())), p.blocks(0), granular=True)}
    for l in range(1, p.L + 1):
        table.update({
            f"w{l}": MemoryShape(lanes(signed(cfg.weight_bits)), p.w_depth(l)),
            f"v{l}": MemoryShape(lanes(signed(cfg.membrane_bits)), p.blocks(l), granular=True),
            f"c{l}": MemoryShape(lanes(unsigned(cfg.count_bits)), p.blocks(l), granular=True),
            f"r{l}": MemoryShape(unsigned(P), T * p.blocks(l)),              # spike raster, word per (t, block)
            f"x{l}": MemoryShape(lanes(unsigned(cfg.trace_bits)), T * p.blocks(l - 1)),  # trace snapshots
            f"care{l}": MemoryShape(unsigned(P), p.blocks(l)),
            f"want{l}": MemoryShape(unsigned(P), p.blocks(l)),
            # inputs of layer l that spiked at least once this sample (their trace is never 0 after)
            f"ever{l}": MemoryShape(unsigned(P), p.blocks(l - 1)),
        })
    for l in range(0, p.L):
        if p.maskable(l):
            table[f"mask{l}"] = MemoryShape(unsigned(P), p.blocks(l))
    return table


class ReadPortSignature(wiring.Signature):
    """A phase's read port (seen from the phase): ``data`` is the word at last cycle's ``addr``."""

    def __init__(self, memory: MemoryShape):
        super().__init__({"addr": Out(memory.addr_bits), "data": In(memory.shape)})


class WritePortSignature(wiring.Signature):
    """A phase's write port: ``data`` is stored at ``addr`` where ``en`` (one bit per lane if granular)."""

    def __init__(self, memory: MemoryShape):
        en_bits = memory.shape.length if memory.granular else 1   # granular words are ArrayLayouts
        super().__init__({"addr": Out(memory.addr_bits), "en": Out(en_bits), "data": Out(memory.shape)})


class Phase(wiring.Component):
    """A phase of the desire core: its ports to the shared memories are the members
    ``<memory>_read`` and ``<memory>_write`` (``phase_members``)."""

    def _read(self, name):
        return getattr(self, f"{name}_read")

    def _write(self, name):
        return getattr(self, f"{name}_write")


def phase_members(p, reads=(), writes=()):
    """``start``/``done``, the named memory ports and (with ``p.debug``) a debug port, for a phase's
    signature; ``reads``/``writes`` name memories of ``memory_table(p)``."""
    table = memory_table(p)
    members = {"start": In(1), "done": Out(1)}
    members.update({f"{name}_read": Out(ReadPortSignature(table[name])) for name in reads})
    members.update({f"{name}_write": Out(WritePortSignature(table[name])) for name in writes})
    if p.debug:
        members["debug"] = Out(wiring.Signature({"valid": Out(1), "payload": Out(p.debug_layout)}))
    return members


def start_state(m):
    """A phase FSM's first state, left one cycle after reset for ``IDLE``: the state register changes
    once, so Icarus evaluates the ``always @*`` blocks decoded from it (it evaluates one only when an
    input changes; a never-changing state would leave the phase's memory addresses X, and the OR of
    them in the core too)."""
    with m.State("START"):
        m.next = "IDLE"


def debug_emitter(m, phase):
    """``DebugTap.emit`` on ``phase``'s debug port (nothing without one), every value and aux lane set
    in every record, 0 where the record has none: a field no record sets would be a constant, which
    the Verilog has Icarus never evaluate (an ``always @*`` without inputs), X in the core's OR."""
    p = phase.params
    tap = DebugTap(m, phase.debug if p.debug else None)

    def emit(kind, layer, time, index, value=(), aux=()):
        pad = [0] * p.debug_lanes
        tap.emit(kind, layer, time, index, value=[*value, *pad][:p.debug_lanes], aux=[*aux, *pad][:p.debug_lanes])
    return emit


def valid_lanes(p, layer, word):
    """Constant bit mask of the lanes of ``word`` (a Value) that hold real neurons of ``layer``."""
    nb, rem, P = p.blocks(layer), p.sizes[layer] % p.P, p.P
    full = (1 << P) - 1
    if rem == 0:
        return Const(full, P)
    return Mux(word == nb - 1, Const((1 << rem) - 1, P), Const(full, P))


def read_block_flags(m, p, phase, layer, word, arriving):
    """Address ``word`` of ``layer``'s counts, care and want bits (and dropout mask) through
    ``phase``'s read ports; ``arriving`` remembers the word whose data comes next cycle."""
    reads = [f"c{layer}", f"care{layer}", f"want{layer}"] + ([f"mask{layer}"] if p.maskable(layer) else [])
    m.d.comb += [getattr(phase, f"{name}_read").addr.eq(word) for name in reads]
    m.d.sync += arriving.eq(word)


def keep_bits(p, phase, layer, train, word):
    """Keep bits of ``layer``'s ``word``: its dropout mask (training; ``phase``'s ``mask<layer>_read``
    data) or all real lanes (inference, and layers without dropout)."""
    if p.maskable(layer):
        mask = getattr(phase, f"mask{layer}_read").data
        return Mux(train, mask, valid_lanes(p, layer, word)) & valid_lanes(p, layer, word)
    return valid_lanes(p, layer, word)
