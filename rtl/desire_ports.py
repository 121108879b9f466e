"""The desire-BP core's memories and what its phases (rtl/desire_*.py) share.

The core (rtl/core.py) owns every memory of ``memory_table`` and joins the phases' ports to it by
name (rtl/phase_ports.py: ``c2_read``, ``w1_write``, ...; here every memory has one writing phase).
"""

from amaranth.hdl import Const, Mux, unsigned, signed
from amaranth.lib import data

from . import phase_ports
from .phase_ports import MemoryShape, Phase, ReadPortSignature, WritePortSignature, memory_members, start_state

__all__ = ["DebugKind", "MemoryShape", "memory_table", "Phase", "ReadPortSignature", "WritePortSignature",
           "phase_members", "start_state", "debug_emitter", "valid_lanes", "keep_bits"]


class DebugKind:
    """Record kinds of the debug stream (``kind`` field)."""
    MASK = 1       # aux[k] = keep bit of neuron n+k of ``layer`` (layer 0 = input)
    SCAN = 2       # value[k] = trace of input n+k of ``layer`` at step t; aux[k] = its input spike
    NEURON = 3     # value[k] = v of neuron n+k after step t; aux[k] = spike | count << 1
    DESIRE_OUT = 4  # aux[k] = care | want << 1 of output neuron n+k
    DESIRE_HID = 5  # value[0] = D_n of ``layer``; aux[0] = care | want << 1


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


def phase_members(p, reads=(), writes=()):
    """``start``/``done``, the named memory ports and (with ``p.debug``) a debug port, for a phase's
    signature; ``reads``/``writes`` name memories of ``memory_table(p)``."""
    return memory_members(memory_table(p), reads, writes, p.debug_layout if p.debug else None)


def debug_emitter(m, phase):
    """``phase_ports.debug_emitter`` with the desire record's ``debug_lanes`` value and aux lanes."""
    return phase_ports.debug_emitter(m, phase.debug if phase.params.debug else None, phase.params.debug_lanes)


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
