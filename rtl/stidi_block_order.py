"""The post blocks of an fc update in descending order of ``latest`` (rtl/stidi_update.py), by a
counting sort in two small memories: the logic does not grow with the number of blocks."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .memories import WordMemory
from .phase_ports import start_state

__all__ = ["BlockOrder"]


class BlockOrder(wiring.Component):
    """Sorts ``blocks`` blocks by a value in 0..``top_value`` (descending) and answers, for a time t,
    how many blocks have a value above t and which they are: a prefix of the sorted list.

    Value 0 means "never needed": such a block is counted nowhere and listed nowhere. Ties keep no
    particular order (the fc update's words of one pre are independent and its displacement sum is
    exact, so the order of a pre's blocks changes no bit; docs/rtl.md §7).

    The user gives every block's value twice, one per cycle or with gaps, each time ending with
    ``value_last`` (a block given twice in a pass counts twice):

    1. ``start``; then, while ``can_count``, the counting pass (a histogram of the values);
    2. the prefix pass runs by itself (``top`` - lowest nonzero value + 1 cycles, after 2 cycles of
       pipeline): per value v, from ``top`` down, ``ptr[v]`` = the blocks with a value above v;
    3. while ``can_place``, the placing pass: block b goes to position ``ptr[value]``, which then
       steps on, so afterwards ``ptr[v]`` = the blocks with a value of v or above;
    4. ``ready``: ``needed`` (one cycle after ``t``, for t < ``top``) = ``ptr[t + 1]`` (at least the
       lowest nonzero value), ``block_at`` (one cycle after ``pos``) = the block at that position.

    Both passes read-modify-write one word of the value memory per block (read latency 1, the word
    written in the cycle before forwarded: a read of it in the cycle of the write is undefined on the
    device, memories.WordMemory). The prefix pass leaves every count it read at 0, so the next sort
    finds a clean histogram without a clearing pass; ``dirty`` (not reset) remembers a sort cut short
    by a reset between its start and its prefix pass, and the next ``start`` then clears every value
    first (``top_value`` + 1 cycles).
    """

    def __init__(self, *, blocks, top_value):
        for name, value in (("blocks", blocks), ("top_value", top_value)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TypeError(f"BlockOrder {name} must be a positive integer, not {value!r}")
        self._blocks, self._top_value = blocks, top_value
        super().__init__({
            "start": In(1),
            "can_count": Out(1), "can_place": Out(1), "ready": Out(1),
            "value_v": In(1), "value": In(range(top_value + 1)), "value_block": In(range(blocks)),
            "value_last": In(1),
            "top": Out(range(top_value + 1)),           # the largest value counted (0: none)
            "t": In(range(top_value)), "needed": Out(range(blocks + 1)),
            "pos": In(range(blocks)), "block_at": Out(range(blocks)),
        })

    @property
    def blocks(self):
        return self._blocks

    @property
    def top_value(self):
        return self._top_value

    def elaborate(self, platform):
        m = Module()
        n, top_value = self._blocks, self._top_value
        entry = data.StructLayout({"count": range(n + 1), "ptr": range(n + 1)})
        values = m.submodules.values = WordMemory(shape=entry, depth=top_value + 1, kind="dual")
        # one bit even for one block: a memory word has at least one
        order = m.submodules.order = WordMemory(shape=range(max(n, 2)), depth=n, kind="dual")
        m.d.comb += [order.read.addr.eq(self.pos), self.block_at.eq(order.read.data)]

        low = Signal(range(top_value + 1))              # the lowest nonzero value counted
        dirty = Signal(reset_less=True)                 # a histogram not yet cleared by its prefix pass
        # the read-modify-write pipeline: a = a value in (its word read), b = its word out (written)
        a_v, a_value, a_block, a_last = Signal(), Signal.like(self.value), Signal.like(self.value_block), Signal()
        b_v, b_value, b_block, b_last = Signal(), Signal.like(self.value), Signal.like(self.value_block), Signal()
        # the count (counting) or ptr (placing) written in the cycle before
        w_v, w_addr, w_field = Signal(), Signal.like(self.value), Signal(range(n + 1))
        m.d.sync += [a_v.eq(self.value_v), a_value.eq(self.value), a_block.eq(self.value_block),
                     a_last.eq(self.value_last)]
        m.d.sync += [b_v.eq(a_v), b_value.eq(a_value), b_block.eq(a_block), b_last.eq(a_last), w_v.eq(0)]
        counts = Signal()                               # b is in the counting pass (else placing)
        word = values.read.data
        old = Signal(range(n + 1))                      # b's count or ptr
        m.d.comb += old.eq(Mux(w_v & (w_addr == b_value), w_field, Mux(counts, word.count, word.ptr)))

        # the prefix pass: read value v, one cycle later write its ptr and zero its count
        v, acc = Signal.like(self.value), Signal(range(n + 1))
        p_v, p_addr = Signal(), Signal.like(self.value)
        m.d.sync += p_v.eq(0)
        with m.If(p_v):
            m.d.comb += [values.write.addr.eq(p_addr), values.write.en.eq(1), values.write.data.ptr.eq(acc)]
            m.d.sync += acc.eq(acc + values.read.data.count)

        m.d.comb += values.read.addr.eq(Mux(self.t + 1 < low, low, self.t + 1))    # the lookup, when ready
        def begin():
            """A new sort: a histogram left dirty by a reset is cleared first."""
            m.d.sync += [self.top.eq(0), low.eq(top_value), acc.eq(0), v.eq(top_value), dirty.eq(1)]
            with m.If(dirty):
                m.next = "CLEAR"
            with m.Else():
                m.next = "COUNT"

        with m.FSM():
            start_state(m)
            with m.State("IDLE"):
                with m.If(self.start):
                    begin()
            with m.State("CLEAR"):                      # after a reset cut a sort short
                m.d.comb += [values.write.addr.eq(v), values.write.en.eq(1)]
                m.d.sync += v.eq(v - 1)
                with m.If(v == 0):
                    m.next = "COUNT"
            with m.State("COUNT"):
                m.d.comb += [self.can_count.eq(1), counts.eq(1), values.read.addr.eq(a_value)]
                with m.If(a_v & (a_value != 0)):
                    with m.If(a_value > self.top):
                        m.d.sync += self.top.eq(a_value)
                    with m.If(a_value < low):
                        m.d.sync += low.eq(a_value)
                with m.If(b_v & b_last):
                    m.d.sync += v.eq(self.top)
                    m.next = "PREFIX"
            with m.State("PREFIX"):
                m.d.comb += values.read.addr.eq(v)
                with m.If(self.top == 0):               # nothing counted: nothing to list
                    m.next = "PLACE"
                with m.Else():
                    m.d.sync += [p_v.eq(1), p_addr.eq(v), v.eq(v - 1)]
                    with m.If(v == low):
                        m.next = "PLACE"
            with m.State("PLACE"):
                m.d.sync += dirty.eq(0)
                m.d.comb += [self.can_place.eq(1), values.read.addr.eq(a_value)]
                with m.If(b_v & b_last):
                    m.next = "READY"
            with m.State("READY"):
                m.d.comb += self.ready.eq(1)
                with m.If(self.start):
                    begin()

        with m.If(b_v & (b_value != 0)):
            # counting: the ptr written is garbage until the prefix pass; placing: the count stays 0
            bumped = Signal(range(n + 1))
            m.d.comb += [bumped.eq(old + 1), values.write.data.ptr.eq(bumped)]
            with m.If(counts):
                m.d.comb += values.write.data.count.eq(bumped)
            with m.Else():
                m.d.comb += [order.write.addr.eq(old), order.write.data.eq(b_block), order.write.en.eq(1)]
            m.d.comb += [values.write.addr.eq(b_value), values.write.en.eq(1)]
            m.d.sync += [w_v.eq(1), w_addr.eq(b_value), w_field.eq(bumped)]
        m.d.comb += self.needed.eq(values.read.data.ptr)
        return m
