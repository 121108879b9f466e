"""Parts every training core needs, whatever its learning rule: sample input, the weight memories
with the host's port, and the debug tap.

A core composes them in its ``elaborate`` and keeps only its rule's sequencer and lanes:

* ``SampleLoader`` takes one sample's pixels and its label beat, in either order, and holds them
  for the core (``start`` when both are in and the core is idle);
* ``WeightBank`` owns the weight memories W_1..W_L (``WordMemory``, single-port where the core's
  parameters say so) and gives the host load/read-back access while the core is idle;
* ``DebugTap`` emits one trace record per cycle in the core's record layout, the layout the
  checker (``sim.model``) decodes.
"""

import operator

from amaranth.hdl import Module, Shape, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .memories import WordMemory

__all__ = ["LaneShape", "core_members", "SampleLoader", "WeightPortSignature", "WeightBank", "DebugTap"]


class LaneShape:
    """The lane arithmetic both cores' parameters share; a subclass provides ``parallelism`` (P, a
    power of two) and ``sizes`` (neurons per layer, input first)."""

    @property
    def P(self):
        return self.parallelism

    @property
    def lg(self):
        """log2 P: the lane bits of a neuron index."""
        return ceil_log2(self.parallelism)

    #: Cycles from the host's ``wport.addr`` to ``wport.rdata`` (``WeightBank.read_latency``).
    weight_read_latency = 1

    @property
    def L(self):
        """Weight layers."""
        return len(self.sizes) - 1

    def blocks(self, layer):
        """Words of P neurons in layer ``layer`` (0 = input)."""
        return -(-self.sizes[layer] // self.P)


def core_members(params):
    """The ports of every training core, for its ``wiring.Component`` signature, from its parameters
    (``label_layout``, ``result_layout``, ``L``, ``addr_bits``, ``P``, ``cfg.weight_bits``, ``debug``,
    ``debug_layout``).

    ``pixels``: stream of u8 pixels, one sample's in input order; ``labels``: one beat per sample;
    ``results``: one beat per sample; ``wport``: the host's weight port (``WeightPortSignature``, P
    weights a word), honoured while ``busy`` is low; ``cycles``: free-running cycle counter; ``busy``:
    a sample is in progress; ``debug`` (only with ``params.debug``): valid + record, no ready, since a
    trace tap must not stall the datapath.
    """
    members = {
        "pixels": In(stream.Signature(unsigned(8))),
        "labels": In(stream.Signature(params.label_layout)),
        "results": Out(stream.Signature(params.result_layout)),
        "wport": In(WeightPortSignature(layers=params.L, addr_bits=params.addr_bits,
                                        word_bits=params.P * params.cfg.weight_bits)),
        "cycles": Out(unsigned(32)),
        "busy": Out(1),
    }
    if params.debug:
        members["debug"] = Out(wiring.Signature({"valid": Out(1), "payload": Out(params.debug_layout)}))
    return members


class SampleLoader(wiring.Component):
    """Loads one sample: ``pixel_count`` pixel beats and one label beat, in either order.

    Beats are taken only while ``idle`` is high (the core is between samples). Each accepted pixel
    appears on ``pixel`` for that cycle (``valid``, its ``index`` in input order, its ``value``),
    for the core to write into its own input memory. The label beat's payload is held on ``label``
    from its beat until the next one. ``start`` is high for the one cycle in which both are complete
    and ``idle`` is high; the loader is then empty again.
    """

    def __init__(self, *, pixel_count, label_layout):
        pixel_count = operator.index(pixel_count)
        if pixel_count < 1:
            raise ValueError(f"pixel_count must be at least 1, not {pixel_count}")
        self.pixel_count = pixel_count
        super().__init__({
            "pixels": In(stream.Signature(unsigned(8))),
            "labels": In(stream.Signature(label_layout)),
            "idle": In(1),
            "pixel": Out(wiring.Signature({"valid": Out(1), "index": Out(range(pixel_count)),
                                           "value": Out(8)})),
            "label": Out(label_layout),
            "start": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.pixel_count + 1))
        have_label = Signal()
        want_pixel = self.idle & (count != self.pixel_count)
        m.d.comb += [self.pixels.ready.eq(want_pixel), self.labels.ready.eq(self.idle & ~have_label)]
        m.d.comb += [self.pixel.valid.eq(want_pixel & self.pixels.valid), self.pixel.index.eq(count),
                     self.pixel.value.eq(self.pixels.payload)]
        with m.If(self.pixel.valid):
            m.d.sync += count.eq(count + 1)
        with m.If(self.labels.valid & self.labels.ready):
            m.d.sync += [self.label.eq(self.labels.payload), have_label.eq(1)]
        m.d.comb += self.start.eq(self.idle & have_label & (count == self.pixel_count))
        with m.If(self.start):
            m.d.sync += [have_label.eq(0), count.eq(0)]
        return m


class WeightPortSignature(wiring.Signature):
    """Host access to the weight memories while the core is idle.

    Seen from the host: ``layer`` (0-based weight layer, i.e. W_{layer+1}), ``addr`` word address,
    ``we`` writes ``wdata`` this cycle; ``rdata`` is the word at the ``addr`` of the bank's
    ``read_latency`` cycles before (the core's parameters: ``weight_read_latency``).
    """

    def __init__(self, *, layers, addr_bits, word_bits):
        super().__init__({
            "layer": Out(range(max(layers, 2))),
            "addr": Out(addr_bits),
            "we": Out(1),
            "wdata": Out(word_bits),
            "rdata": In(word_bits),
        })


class WeightBank(wiring.Component):
    """The weight memories W_1..W_L, one ``WordMemory`` per layer, and the host's port.

    ``memories``: one ``(depth, single_port)`` per layer; every word has ``word_shape``. The core
    drives ``reads[l - 1]`` / ``writes[l - 1]`` (the ``WordMemory`` ports of W_l) while
    ``host_enable`` is low; while it is high the host's ``wport`` drives them and the core's
    requests are ignored. Single-port memories: the core must never read a word it needs in a cycle
    in which it writes that memory (``WordMemory``). ``registered``: every ``WordMemory`` registers
    its ports (``read_latency`` 2 for the core and the host alike).
    """

    def __init__(self, *, word_shape, memories, registered=False):
        if not memories:
            raise ValueError("a weight bank needs at least one layer")
        self.memories = tuple((operator.index(depth), bool(single)) for depth, single in memories)
        self.word_shape = word_shape
        self.addr_bits = max(ceil_log2(max(depth, 2)) for depth, _ in self.memories)
        self._layers = [WordMemory(shape=word_shape, depth=max(depth, 2), kind="single" if single else "dual",
                                   registered=registered)
                        for depth, single in self.memories]
        self.read_latency = self._layers[0].latency
        word_bits = Shape.cast(word_shape).width
        super().__init__({
            "reads": In(wiring.Signature({"addr": Out(self.addr_bits), "data": In(word_shape)})).array(len(self.memories)),
            "writes": In(wiring.Signature({"addr": Out(self.addr_bits), "en": Out(1),
                                           "data": Out(word_shape)})).array(len(self.memories)),
            "wport": In(WeightPortSignature(layers=len(self.memories), addr_bits=self.addr_bits, word_bits=word_bits)),
            "host_enable": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        host = self.wport
        host_layer = host.layer                  # becomes the layer whose read data arrives this cycle
        for n in range(self.read_latency):
            delayed = Signal.like(host.layer, name=f"host_layer{n}")
            m.d.sync += delayed.eq(host_layer)
            host_layer = delayed
        for l, memory in enumerate(self._layers):
            m.submodules[f"w{l + 1}"] = memory
            read, write = self.reads[l], self.writes[l]
            m.d.comb += read.data.eq(memory.read.data)
            with m.If(self.host_enable):
                m.d.comb += memory.read.addr.eq(host.addr)
                with m.If(host.we & (host.layer == l)):
                    m.d.comb += [memory.write.addr.eq(host.addr), memory.write.en.eq(1),
                                 memory.write.data.eq(host.wdata)]
            with m.Else():
                m.d.comb += [memory.read.addr.eq(read.addr), memory.write.addr.eq(write.addr),
                             memory.write.en.eq(write.en), memory.write.data.eq(write.data)]
            with m.If(host_layer == l):
                m.d.comb += host.rdata.eq(memory.read.data)
        return m


class DebugTap:
    """Emits debug records on a core's ``debug`` port (valid + payload in ``layout``, no
    backpressure: the consumer takes every beat), or nothing at all when the core has no tap.

    ``emit`` adds combinational assignments to the module in the current control context, so a
    record leaves in the cycle its values are valid; the core never emits two records in one cycle.
    """

    def __init__(self, m, port=None):
        self._m, self._port = m, port

    def emit(self, kind, layer, time, index, value=(), aux=()):
        if self._port is None:
            return
        record = self._port.payload
        statements = [self._port.valid.eq(1), record.kind.eq(kind), record.layer.eq(layer), record.t.eq(time),
                      record.n.eq(index)]
        statements += [record.value[q].eq(v) for q, v in enumerate(value)]
        statements += [record.aux[q].eq(a) for q, a in enumerate(aux)]
        self._m.d.comb += statements
