"""Board top for synthesis: a training core (desire BP or STiDi-BP) behind a two-pin serial stand-in
for the host link.

A core placed alone on a board would have hundreds of ports and no pins for them, and a core with
unconnected ports is optimised away by Yosys. ``SerialHarness`` keeps every port alive with two
pins: every core input is a bit of one shift register loaded from ``serial_in``, and every core
output is XOR-reduced into ``serial_out``. Nothing can then be constant, so Yosys keeps the whole
datapath. This is a stand-in for synthesis measurements until the UART host link exists: it
occupies the FTDI UART pins that link will use, but it speaks no protocol.
"""

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .core import CoreParams, DesireCore
from .stidi_core import StidiCore, StidiCoreParams

__all__ = ["SerialHarness", "BoardTop", "core_for", "rule_of"]


def rule_of(params) -> str:
    """The learning rule whose core ``params`` describe: "desire" (``CoreParams``) or "stidi"
    (``StidiCoreParams``)."""
    if isinstance(params, CoreParams):
        return "desire"
    if isinstance(params, StidiCoreParams):
        return "stidi"
    raise TypeError(f"params must be CoreParams or StidiCoreParams, not {params!r}")


def core_for(params):
    """The core ``params`` describe: ``DesireCore`` or ``StidiCore``."""
    return {"desire": DesireCore, "stidi": StidiCore}[rule_of(params)](params)


class SerialHarness(wiring.Component):
    """The core of ``params`` (``core_for``: ``DesireCore`` for ``CoreParams``, ``StidiCore`` for
    ``StidiCoreParams``) whose inputs come from a shift register and whose outputs are XOR-reduced.

    Ports:
      * ``serial_in``: shifted into the input register at every clock (synchronised by the caller);
      * ``serial_out``: XOR of every core output bit, ``latency`` cycles after the outputs.

    The XOR is a tree of 4-input XORs with a register after every level: one LUT and its own FF per
    node (one logic cell on iCE40), so the harness adds no path of its own to the core's. A
    one-cycle XOR of a few hundred outputs, straight from block RAM, was the longest path on ECP5.
    """

    serial_in: In(1)
    serial_out: Out(1)

    def __init__(self, params: CoreParams | StidiCoreParams):
        rule_of(params)     # a TypeError for anything else, before params.debug is read
        if params.debug:
            raise ValueError("the synthesis harness measures the core without its debug tap; pass debug=False")
        self.params = params
        self.core = core_for(params)
        super().__init__()

    @property
    def input_bits(self) -> int:
        """Length of the input shift register: one bit per core input bit (so its FFs grow with P)."""
        return sum(len(Value.cast(value)) for _, member, value in self.core.signature.flatten(self.core)
                   if member.flow == In)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        # Core ports from its signature, so a port the core gains later is kept alive too.
        inputs, outputs = [], []
        for _, member, value in core.signature.flatten(core):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        chain = Cat(*inputs)
        register = Signal(len(chain))
        m.d.sync += register.eq(Cat(self.serial_in, register[:-1]))
        m.d.comb += chain.eq(register)
        level = Cat(*outputs)
        for depth in range(self.latency):
            nodes = Signal((len(level) + 3) // 4, name=f"xor_level{depth}")
            m.d.sync += [nodes[n].eq(level[4 * n:4 * n + 4].xor()) for n in range(len(nodes))]
            level = nodes
        m.d.comb += self.serial_out.eq(level)
        return m

    @property
    def latency(self) -> int:
        """Cycles from a core output to ``serial_out``: one per level of the XOR tree."""
        width = sum(len(Value.cast(value)) for _, member, value in self.core.signature.flatten(self.core)
                    if member.flow == Out)
        depth = 0
        while width > 1:
            width, depth = (width + 3) // 4, depth + 1
        return depth


class BoardTop(Elaboratable):
    """``SerialHarness`` on a board: ``serial_in`` from the UART RX pin (two-FF synchronised, as the
    pin is asynchronous to the board clock), ``serial_out`` to the UART TX pin. The clock is the
    platform's default clock (its ``sync`` domain); a top with pins and no ports is an Elaboratable."""

    def __init__(self, params: CoreParams | StidiCoreParams):
        self.harness = SerialHarness(params)

    def elaborate(self, platform):
        m = Module()
        m.submodules.harness = harness = self.harness
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.submodules.rx_sync = FFSynchronizer(rx_buffer.i, harness.serial_in)
        m.d.comb += tx_buffer.o.eq(harness.serial_out)
        return m
