"""How a core's phases reach the core's memories, whatever the learning rule: the desire-BP core
(rtl/core.py, phases rtl/desire_*.py) and the STiDi-BP core (rtl/stidi_core.py, phases rtl/stidi_*.py).

A core owns every memory that more than one phase touches, described by a table of ``MemoryShape``
by name. A phase component declares the ports it uses as members named ``<memory>_read`` /
``<memory>_write`` (``memory_members``), with the memory's word shape and address width. The core
joins them by name (``join_ports``): a read port's address is the OR of its readers' addresses and
its data goes to all of them; a write port's address, enable and data are the OR of its writers'. A
phase drives a port only in the cycles it uses it, and the phases run one after the other, so at
most one drives a non-zero value.

A phase starts on a one-cycle ``start`` and raises ``done`` in its last cycle, in which the next phase
may start: handing over costs no cycle.
"""

import operator
from contextlib import contextmanager
from functools import reduce

from amaranth.hdl import Mux, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .skeleton import DebugTap

__all__ = ["MemoryShape", "ReadPortSignature", "WritePortSignature", "Phase", "memory_members", "debug_member",
           "start_state", "on_start", "advance_or_leave", "debug_emitter", "any_of", "memory_ports", "join_ports",
           "join_debug"]


class MemoryShape:
    """One state memory: word ``shape``, ``depth`` words, ``granular`` = one write enable per lane."""

    def __init__(self, shape, depth, granular=False):
        self.shape, self.depth, self.granular = shape, max(depth, 2), granular

    @property
    def addr_bits(self):
        return ceil_log2(self.depth)


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
    """A phase of a core: its ports to the shared memories are the members ``<memory>_read`` and
    ``<memory>_write`` (``memory_members``)."""

    def _read(self, name):
        return getattr(self, f"{name}_read")

    def _write(self, name):
        return getattr(self, f"{name}_write")


def debug_member(layout):
    """The debug port of a core or phase: valid + one record in ``layout``, no ready (a trace tap
    must not stall the datapath)."""
    return Out(wiring.Signature({"valid": Out(1), "payload": Out(layout)}))


def memory_members(table, reads=(), writes=(), debug_layout=None):
    """``start``/``done``, the ports of the memories named in ``reads``/``writes`` (keys of ``table``)
    and, given a ``debug_layout``, a debug port: the members of a phase's signature."""
    members = {"start": In(1), "done": Out(1)}
    members.update({f"{name}_read": Out(ReadPortSignature(table[name])) for name in reads})
    members.update({f"{name}_write": Out(WritePortSignature(table[name])) for name in writes})
    if debug_layout is not None:
        members["debug"] = debug_member(debug_layout)
    return members


def start_state(m):
    """A phase FSM's first state, left one cycle after reset for ``IDLE``: the state register changes
    once, so Icarus evaluates the ``always @*`` blocks decoded from it (it evaluates one only when an
    input changes; a never-changing state would leave the phase's memory addresses X, and the OR of
    them in the core too)."""
    with m.State("START"):
        m.next = "IDLE"


@contextmanager
def on_start(m, phase):
    """A phase FSM's ``START`` and ``IDLE`` states (``start_state``); the body acts in the cycle in which
    ``phase.start`` is high (and names the first state)."""
    start_state(m)
    with m.State("IDLE"), m.If(phase.start):
        yield


def advance_or_leave(m, counter, last, again, after):
    """A loop's end in an FSM state: after ``counter``'s ``last`` value go to state ``after``, else
    advance ``counter`` and go to state ``again``."""
    with m.If(counter == last):
        m.next = after
    with m.Else():
        m.d.sync += counter.eq(counter + 1)
        m.next = again


def debug_emitter(m, port, lanes):
    """``DebugTap.emit`` on a debug ``port`` (nothing if None), all ``lanes`` value and aux lanes set in
    every record, 0 where the record has none: a field no record sets would be a constant, which the
    Verilog has Icarus never evaluate (an ``always @*`` without inputs), X in the core's OR."""
    tap = DebugTap(m, port)

    def emit(kind, layer, time, index, value=(), aux=()):
        pad = [0] * lanes
        tap.emit(kind, layer, time, index, value=[*value, *pad][:lanes], aux=[*aux, *pad][:lanes])
    return emit


def any_of(values):
    """Bitwise OR of ``values`` (ports of phases of which at most one drives a non-zero value)."""
    return reduce(operator.or_, [Value.cast(value) for value in values])


def memory_ports(phase):
    """(memory name, "read" | "write", port) of every memory port ``phase`` declares."""
    for member in phase.signature.members:
        name, _, kind = member.rpartition("_")
        if kind in ("read", "write"):
            yield name, kind, getattr(phase, member)


def join_ports(m, ports, phases, writers=None, running=None):
    """Join every phase's memory ports to the core's: ``ports[name]`` = (read, write) port of memory
    ``name``; each read port's address is the OR of its phases' addresses and its data goes to all of
    them; each write port's address, enable and data the OR of its writers': the phases' and the
    core's own (``writers``: name -> [write port], e.g. the pixel loading of IDLE).

    ``running`` (phase -> its running signal; for a core whose phases drive ports from their data
    stages, outside their FSM): where several drive one port, each phase's values count only while it
    runs. Icarus leaves a data stage's outputs X until its valid bits first change, i.e. until the
    phase first runs, and X in an OR would spoil the others' values."""
    readers, writers = {}, {name: [(None, port) for port in ports_] for name, ports_ in (writers or {}).items()}
    for phase in phases:
        for name, kind, port in memory_ports(phase):
            (readers if kind == "read" else writers).setdefault(name, []).append((phase, port))

    def joined(users, field):
        if running is None or len(users) == 1:
            return any_of(getattr(port, field) for _, port in users)
        return any_of(getattr(port, field) if phase is None else Mux(running[phase], getattr(port, field), 0)
                      for phase, port in users)

    for name, users in readers.items():
        read = ports[name][0]
        m.d.comb += read.addr.eq(joined(users, "addr"))
        m.d.comb += [port.data.eq(read.data) for _, port in users]
    for name, users in writers.items():
        write = ports[name][1]
        m.d.comb += [write.addr.eq(joined(users, "addr")), write.en.eq(joined(users, "en")),
                     write.data.eq(joined(users, "data"))]


def join_debug(m, port, taps):
    """The core's debug ``port`` from its taps, (``on``, debug port) pairs: the records of the tap
    that is on (the phase that runs; they never share a cycle). A phase's tap is decoded from its
    pipeline's valid bits, which Icarus leaves X until they first change: ``on`` masks them."""
    m.d.comb += [port.valid.eq(any_of(Mux(on, tap.valid, 0) for on, tap in taps)),
                 port.payload.eq(any_of(Mux(on, tap.payload.as_value(), 0) for on, tap in taps))]
