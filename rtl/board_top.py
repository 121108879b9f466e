"""Board top for synthesis: the desire-BP core behind a two-pin serial stand-in for the host link.

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

__all__ = ["SerialHarness", "BoardTop"]


class SerialHarness(wiring.Component):
    """``DesireCore(params)`` whose inputs come from a shift register and whose outputs are XOR-reduced.

    Ports:
      * ``serial_in``: shifted into the input register at every clock (synchronised by the caller);
      * ``serial_out``: registered XOR of every core output bit, ``latency`` cycles after the outputs.
    """
    latency = 1

    serial_in: In(1)
    serial_out: Out(1)

    def __init__(self, params: CoreParams):
        if params.debug:
            raise ValueError("the synthesis harness measures the core without its debug tap; pass debug=False")
        self.params = params
        self.core = DesireCore(params)
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
        m.d.sync += self.serial_out.eq(Cat(*outputs).xor())
        return m


class BoardTop(Elaboratable):
    """``SerialHarness`` on a board: ``serial_in`` from the UART RX pin (two-FF synchronised, as the
    pin is asynchronous to the board clock), ``serial_out`` to the UART TX pin. The clock is the
    platform's default clock (its ``sync`` domain); a top with pins and no ports is an Elaboratable."""

    def __init__(self, params: CoreParams):
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
