"""One memory component that is the same design in simulation and in synthesis.

``WordMemory`` is a word-wide memory with one synchronous read and one whole-word write, either
simple dual-port (``kind="dual"``: a ``lib.memory.Memory``, block RAM on any FPGA) or single-port
(``kind="single"``: one address per cycle). On an iCE40 UltraPlus the single-port kind becomes the
device's SB_SPRAM256KA blocks (4 x 16 bit x 16384 words on the UP5K), the only place where the
first layer's weights fit; everywhere else (Amaranth's simulator, the Verilog that cocotb runs,
ECP5) it is a ``lib.memory.Memory`` that behaves like one single-port SRAM, so a controller that
reads and writes in the same cycle gets wrong data in every simulation, not only on the board.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["WordMemory", "KINDS", "SPRAM_WIDTH", "SPRAM_DEPTH", "is_ice40_up", "COLLISION_ATTR",
           "SYNTH_COLLISION_SCRIPT"]

#: Memory kinds: simple dual-port (a read and a write each cycle) or single-port (one of them).
KINDS = ("dual", "single")
#: Data width and depth of one iCE40 UltraPlus SB_SPRAM256KA block.
SPRAM_WIDTH = 16
SPRAM_DEPTH = 16384
#: A word wider than this (the widest block RAM port, ECP5's 512 x 36) and deeper than ``BANK_DEPTH``
#: is stored in banks of ``BANK_DEPTH`` words: Yosys then builds each bank from 2048 x 9 block RAMs
#: side by side, and a read chooses among ceil(depth / 2048) banks. Left to itself it stacks 512 x 36
#: blocks (784-128-10 P=16's first layer: 13 deep) behind a 13-way multiplexer per bit, thousands
#: of LUTs and five times the block RAM data wires to route.
BANK_ABOVE_WIDTH = 36
BANK_BITS = 11
BANK_DEPTH = 1 << BANK_BITS
#: Attribute on the ``lib.memory.Memory`` of every dual-port ``WordMemory``: a read of the word
#: written in the same cycle returns an undefined word.
COLLISION_ATTR = "mfsnn_collision_undefined"
#: Yosys commands (after reading the design) that tell the memory mapper so: without them it keeps
#: the old word with a register of the write data, an address comparator and a multiplexer per
#: memory, about one LUT and one FF per bit of the word, on the read path. (``memory_collect``
#: makes each memory one cell that carries the attribute; it skips modules with processes.)
SYNTH_COLLISION_SCRIPT = f"proc\nmemory_collect\nsetparam -set RD_COLLISION_X_MASK 1'1 a:{COLLISION_ATTR}"


def is_ice40_up(platform) -> bool:
    """True for an iCE40 UltraPlus platform (``device`` "iCE40UP5K", "iCE40UP3K"), which has SPRAM."""
    return platform is not None and str(getattr(platform, "device", "")).startswith("iCE40UP")


class WordMemory(wiring.Component):
    """A memory of ``depth`` words of ``shape``, read latency 1 (2 if ``registered``), whole-word writes.

    Parameters
    ----------
    shape : shape-castable
        One word, e.g. ``data.ArrayLayout(signed(16), P)`` or ``unsigned(24)``.
    depth : int
        Number of words, at least 1 (any value, not only powers of two).
    kind : "dual" or "single"
        ``"dual"``: simple dual-port: a read at ``read.addr`` and a write at ``write.addr`` in the
        same cycle, independent (a ``lib.memory.Memory``; block RAM, also on iCE40).
        ``"single"``: single-port: one address per cycle. In a cycle with ``write.en`` the memory's
        address is ``write.addr``, and the read data of the next cycle is garbage for the reader:
        the old word at ``write.addr`` in simulation and on every target but iCE40 UltraPlus, and
        undefined (``x``) from the SB_SPRAM256KA blocks on iCE40 UltraPlus.
    registered : bool
        ``False`` (default): the ports go straight to the memory. ``True``: the read address, the
        write address, enable and data are registered first, so everything happens one cycle later
        (read latency 2; a write lands a cycle after its request, a read issued in the cycle after
        it still sees it, a read and a write in one cycle collide as without the registers). For a
        memory of many block RAMs spread across the die: the route from the controller's address
        logic to all of them was 784-128-10 P=16's longest path on ECP5.

    Members
    -------
    read : ``In(Signature({"addr": Out(addr_bits), "data": In(shape)}))``
        The user drives ``read.addr``; ``read.data`` is the word at the address of ``latency``
        cycles before (synchronous, non-transparent: a write requested in the cycle of the read is
        not seen).
    write : ``In(Signature({"addr": Out(addr_bits), "en": Out(1), "data": Out(shape)}))``
        When ``write.en`` is high, ``write.data`` is stored at ``write.addr`` at the clock edge.

    A ``"dual"`` memory's read of the address written in the same cycle (a collision) gives an
    undefined word on the device: block RAM does not define it across its two ports, and Yosys is
    told so (``SYNTH_COLLISION_SCRIPT``) rather than adding logic that keeps the old word. Simulation
    returns the old word; a reader must not use it. The cores never read the word they write in
    that cycle: with a model that returned the old word inverted, every Amaranth-simulator test of
    both cores and the desire core's cocotb tests stayed bit-exact (docs/synth.md §4.2).

    Clock domain ``sync``. The contents are undefined until written (SPRAM has no initial
    contents; the ``Memory`` starts at zero, which the caller must not rely on). An address at or
    beyond ``depth`` is not checked. On iCE40 UltraPlus ``spram_tiles`` blocks are used: ceil(width
    / 16) side by side times ceil(depth / 16384) rows chosen by the upper address bits; a design
    needing more blocks than the device has fails in placement, not here.
    """

    def __init__(self, *, shape, depth, kind, registered=False):
        # bool is an int, and Shape.cast(True) would quietly be unsigned(1)
        try:
            width = None if isinstance(shape, bool) else Shape.cast(shape).width
        except TypeError:
            width = None
        if width is None:
            raise TypeError(f"WordMemory shape must be a shape-castable object, not {shape!r}")
        if width < 1:
            raise ValueError(f"WordMemory shape must be at least 1 bit wide, not {shape!r}")
        if not isinstance(depth, int) or isinstance(depth, bool):
            raise TypeError(f"WordMemory depth must be a positive integer, not {depth!r}")
        if depth < 1:
            raise ValueError(f"WordMemory depth must be a positive integer, not {depth!r}")
        if kind not in KINDS:
            raise ValueError(f"WordMemory kind must be 'dual' or 'single', not {kind!r}")
        if not isinstance(registered, bool):
            raise TypeError(f"WordMemory registered must be True or False, not {registered!r}")
        self._shape, self._depth, self._kind, self._width = shape, depth, kind, width
        self._registered = registered
        addr_bits = ceil_log2(depth)  # as lib.memory: 0 bits for depth 1
        super().__init__({
            "read": In(wiring.Signature({"addr": Out(addr_bits), "data": In(shape)})),
            "write": In(wiring.Signature({"addr": Out(addr_bits), "en": Out(1), "data": Out(shape)})),
        })

    @property
    def shape(self):
        return self._shape

    @property
    def depth(self):
        return self._depth

    @property
    def kind(self):
        return self._kind

    @property
    def registered(self):
        return self._registered

    @property
    def latency(self):
        """Cycles from ``read.addr`` to ``read.data``."""
        return 2 if self._registered else 1

    @property
    def width(self):
        """Bits per word."""
        return self._width

    @property
    def addr_bits(self):
        return ceil_log2(self._depth)

    @property
    def bits(self):
        """Bits stored: ``width * depth``."""
        return self._width * self._depth

    @property
    def spram_tiles(self):
        """SB_SPRAM256KA blocks this memory becomes on an iCE40 UltraPlus (0 for ``"dual"``)."""
        if self._kind != "single":
            return 0
        return self._spram_columns * self._spram_rows

    @property
    def _spram_columns(self):
        return -(-self._width // SPRAM_WIDTH)

    @property
    def _spram_rows(self):
        return -(-self._depth // SPRAM_DEPTH)

    def __repr__(self):
        if not hasattr(self, "_kind"):  # the constructor refused its arguments
            return super().__repr__()
        registered = ", registered=True" if self._registered else ""
        return f"WordMemory(shape={self._shape!r}, depth={self._depth!r}, kind={self._kind!r}{registered})"

    def elaborate(self, platform):
        m = Module()
        request = self._request(m)
        if self._kind == "single":
            # one address per cycle: a write takes the port, the read of that cycle gets garbage
            addr = Signal(self.addr_bits, name="addr")
            m.d.comb += addr.eq(Mux(request.write.en, request.write.addr, request.read.addr))
            if is_ice40_up(platform):
                self._elaborate_spram(m, addr, request.write)
                return m
            read_addr = addr
        else:
            read_addr = request.read.addr
        dual = self._kind == "dual"
        depths, words = self._bank_depths, []
        for bank, depth in enumerate(depths):
            # only the addressed bank writes; its read port sees the address's low bits
            mem = Memory(shape=self._shape, depth=depth, init=[], attrs={COLLISION_ATTR: "1"} if dual else {})
            m.submodules["mem" if len(depths) == 1 else f"mem{bank}"] = mem
            rd, wr = mem.read_port(), mem.write_port()
            low = ceil_log2(depth)
            selected = (request.write.addr >> BANK_BITS) == bank if len(depths) > 1 else Const(1, 1)
            m.d.comb += [rd.addr.eq(read_addr[:low]), wr.addr.eq(request.write.addr[:low]),
                         wr.en.eq(request.write.en & selected), wr.data.eq(request.write.data)]
            words.append(Value.cast(rd.data))
        word = words[0]
        if len(words) > 1:
            # read data comes a cycle after its address: the multiplexer needs that cycle's bank
            bank_q = Signal(range(len(words)), name="read_bank")
            m.d.sync += bank_q.eq(read_addr >> BANK_BITS)
            word = Array(words)[bank_q]
        m.d.comb += self.read.data.eq(word)
        return m

    def _request(self, m):
        """The ports as the memory sees them: ``self``'s own, or registered copies (``registered``)."""
        if not self._registered:
            return self
        # only the write enable needs a reset: the rest is data path
        read = SimpleNamespace(addr=Signal.like(self.read.addr, name="read_addr_q", reset_less=True))
        write = SimpleNamespace(addr=Signal.like(self.write.addr, name="write_addr_q", reset_less=True),
                                en=Signal(name="write_en_q"),
                                data=Signal(self._width, name="write_data_q", reset_less=True))
        m.d.sync += [read.addr.eq(self.read.addr), write.addr.eq(self.write.addr), write.en.eq(self.write.en),
                     write.data.eq(self.write.data)]
        return SimpleNamespace(read=read, write=write)

    @property
    def _bank_depths(self):
        """Depths of the ``lib.memory.Memory`` banks, ``BANK_DEPTH`` words each but the last."""
        if self._width <= BANK_ABOVE_WIDTH or self._depth <= BANK_DEPTH:
            return [self._depth]
        full, rest = divmod(self._depth, BANK_DEPTH)
        return [BANK_DEPTH] * full + ([rest] if rest else [])

    def _elaborate_spram(self, m, addr, write):
        """SB_SPRAM256KA tiles: ``_spram_columns`` side by side, ``_spram_rows`` deep, the row chosen
        by ``addr[14:]`` (ports and behaviour as in Yosys' ``share/ice40/cells_sim.v``)."""
        rows, columns = self._spram_rows, self._spram_columns
        wdata = _zext(Value.cast(write.data), columns * SPRAM_WIDTH)
        row = addr[14:]
        rdata_rows = []
        for r in range(rows):
            douts = []
            for c in range(columns):
                dout = Signal(SPRAM_WIDTH, name=f"spram_{r}_{c}_dataout")
                m.submodules[f"spram_{r}_{c}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=_zext(addr[:14], 14),
                    i_DATAIN=wdata[c * SPRAM_WIDTH:(c + 1) * SPRAM_WIDTH],
                    i_MASKWREN=Const(0b1111, 4),   # whole words only
                    i_WREN=write.en,
                    # only the addressed row: the others neither write nor change their DATAOUT
                    i_CHIPSELECT=(row == r) if rows > 1 else Const(1, 1),
                    i_CLOCK=ClockSignal(),
                    i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1),
                    i_POWEROFF=Const(1, 1),        # active low: 1 keeps the block and its contents on
                    o_DATAOUT=dout)
                douts.append(dout)
            rdata_rows.append(Cat(*douts))
        rdata = rdata_rows[0]
        if rows > 1:
            # read data comes a cycle after its address: the output mux needs that cycle's row
            row_q = Signal(range(rows), name="spram_row", reset_less=True)  # data path only
            m.d.sync += row_q.eq(row)
            for r in range(1, rows):
                rdata = Mux(row_q == r, rdata_rows[r], rdata)
        m.d.comb += self.read.data.eq(rdata[:self._width])


def _zext(value, width):
    """``value`` (unsigned) zero-extended or truncated to ``width`` bits."""
    value = Value.cast(value).as_unsigned()
    if len(value) >= width:
        return value[:width]
    return Cat(value, Const(0, width - len(value)))
