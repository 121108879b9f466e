"""Parameters of the STiDi-BP core: ``StidiCoreParams``, the hardware shape derived from a golden
``StidiConfig``, shared by the core (rtl/stidi_core.py) and its phases (rtl/stidi_*.py), and the
record kinds of its debug stream (``StidiDebugKind``)."""

import operator
from dataclasses import dataclass
from functools import cached_property

from amaranth.hdl import Const, signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

from ..golden.stidi import StidiConfig, build_stages, default_thresholds, parse_stidi_topology
from .skeleton import LaneShape
from .stidi_lanes import signed_bits

__all__ = ["StidiCoreParams", "StidiDebugKind"]


class StidiDebugKind:
    """Record kinds of the debug stream (``kind`` field); ``n`` is the first slot of the record (value[k]
    is slot n + k; ``StidiCoreParams.slot_neuron``: the flat, channel-major neuron index, except in a
    conv stage at P > 1, whose words hold P output channels), ``layer`` the stage (0 = input; conv and
    pool layers are stages of their own, as in the golden trace keys)."""
    ENCODE = 1     # value[0] = spike time of input n (stage 0)
    STEP = 2       # stage l, step t: value[k] = U after step t, aux[k] = I after step t's arrivals
    TIMES = 3      # stage l: value[k] = spike time (T = silent)
    DECISION = 4   # value[0] = prediction (§7), aux[0] = target case 1..5 (§8, training only)
    TARGET = 5     # value[k] = target time, aux[k] = ternary output error d
    DISP = 6       # stage m: value[k] = displacement D arriving at m (before the clip rule / routing)
    LEVEL = 7      # stage m: value[k] = error sign, aux[k] = level
    POOL = 8       # pooling stage l: value[0] = pooled spike time, aux[0] = argmin tap (§6)


def _pow2(n):
    return n >= 1 and n & (n - 1) == 0


def _host_chain(words, lanes):
    """Row/column sizes (s_0, ..., s_L) whose (s_l, s_{l-1}) matrices hold weight layer l's ``words[l-1]``
    words of ``lanes`` weights: the shape in which the shared host side (``sim.model.pack_weights``:
    an (s_l, s_{l-1}) matrix per layer, word b*s_{l-1} + i holding rows b*P .. b*P + P-1 of column i)
    moves a conv topology's weights. s_0 = 1, s_l = P * ceil(words / s_{l-1})."""
    chain = [1]
    for count in words:
        chain.append(lanes * -(-count // chain[-1]))
    return tuple(chain)


@dataclass(frozen=True)
class StidiCoreParams(LaneShape):
    """Hardware shape of a STiDi-BP core: the golden ``StidiConfig`` (integer, binary forward, ternary
    output error; fully connected, or conv/pool maps then fully connected layers), parallelism P (a
    power of two) and the debug tap. A small test network is an ordinary
    config with a flat input, e.g. ``StidiConfig(topology="16-12-4")``.

    Stages are the golden model's (``golden.stidi.build_stages``: 0 = input, one per topology token);
    ``stage_sizes`` their neurons. ``sizes`` is what the shared host side (weight port packing,
    ``LaneShape.L``/``blocks``) sees: for a fully connected topology the stage sizes; for a conv
    topology a chain of host matrix shapes (``_host_chain``) in which weight layer l's words (``w_depth``)
    travel as an (s_l, s_{l-1}) matrix (``sim.stidi_check.to_host`` / ``from_host`` convert).

    A conv topology at P > 1 (docs/rtl.md §7): a conv stage's lanes are P output channels at one
    position (``channel_lanes``), every other stage's P consecutive neurons; every conv layer is
    followed by a pooling layer, so the stages the fc and quantisation phases share with the maps
    (pooling outputs) keep the flat layout.
    """
    cfg: StidiConfig
    parallelism: int = 1
    debug: bool = False

    @staticmethod
    def config_problems(cfg: StidiConfig) -> list:
        """What of ``cfg`` this core does not build, as (config fields concerned, why) pairs; empty
        when it builds it. The constructor raises the first; the CLI names the option of each field."""
        problems = []
        topology = parse_stidi_topology(cfg.topology)
        kinds = [layer[0] for layer in topology.layers]
        if topology.is_conv:
            if kinds[0] == "pool":
                problems.append((("topology",), f"StidiCore needs a conv layer before the first pooling layer "
                                                f"({cfg.topology!r} pools the input)"))
            if any(a == b == "pool" for a, b in zip(kinds, kinds[1:])):
                problems.append((("topology",), f"StidiCore routes the error through one pooling layer at a "
                                                f"time: {cfg.topology!r} has two in a row"))
        if cfg.arith != "fixed":
            problems.append((("arith",), f"StidiCore implements the integer model: arith must be 'fixed', "
                                         f"not {cfg.arith!r}"))
        if cfg.forward != "binary":
            problems.append((("forward",), f"StidiCore has 1-bit forward weights: forward must be 'binary', "
                                           f"not {cfg.forward!r}"))
        if cfg.output_levels != 0:
            problems.append((("output_levels",), f"StidiCore builds the ternary output error only: output_levels "
                                                 f"must be 0, not {cfg.output_levels}"))
        stages = build_stages(topology)
        hidden = [stages[s - 1].size for s in range(2, len(stages)) if stages[s].kind != "pool"]
        if cfg.drop8 and max(hidden, default=0) > 1 << 16:
            problems.append((("drop8", "topology"), "dropout hashes hidden neuron indices below 2**16 (§10.3): "
                                                    "a hidden layer is larger"))
        return problems

    def __post_init__(self):
        if not isinstance(self.cfg, StidiConfig):
            raise TypeError(f"cfg must be a StidiConfig, not {self.cfg!r}")
        problems = self.config_problems(self.cfg)
        if problems:
            raise ValueError(problems[0][1])
        try:
            p = operator.index(self.parallelism)
        except TypeError:
            raise TypeError(f"parallelism must be an integer, not {self.parallelism!r}") from None
        if not _pow2(p) or p > 256:
            raise ValueError(f"parallelism must be a power of two in 1..256, not {self.parallelism!r}")
        if self.is_conv and p != 1:
            kinds = [stage.kind for stage in self.stages] + [None]
            if any(kind == "conv" and after != "pool" for kind, after in zip(kinds, kinds[1:])):
                raise ValueError(f"a conv topology at parallelism {p} needs a pooling layer after every conv layer "
                                 f"({self.cfg.topology!r} has a conv layer without; parallelism 1 builds it)")
        if not isinstance(self.debug, bool):
            raise TypeError(f"debug must be a bool, not {self.debug!r}")

    # ---------------------------------------------------------------- stages
    @cached_property
    def stages(self):
        """The golden stages (kind, shape, kernel, weight shape, fan-in) of the topology."""
        return build_stages(parse_stidi_topology(self.cfg.topology))

    @property
    def is_conv(self):
        return parse_stidi_topology(self.cfg.topology).is_conv

    @property
    def top(self):
        """The output stage."""
        return len(self.stages) - 1

    @property
    def stage_sizes(self):
        """Neurons per stage, (N_0, ..., N_top); N_0 = the pixels the core takes per sample."""
        return tuple(stage.size for stage in self.stages)

    def channel_lanes(self, stage):
        """``stage`` is a conv stage at P > 1: its word c_b*H*W + y*W + x holds output channels
        c_b*P .. c_b*P + P-1 at (y, x) (lanes past the channels are padding that never fires); every
        other stage's word b holds neurons b*P .. b*P + P-1."""
        return self.P > 1 and self.kind(stage) == "conv"

    def stage_blocks(self, stage):
        """Words of P neurons of ``stage``."""
        if self.channel_lanes(stage):
            c, h, w = self.stages[stage].shape
            return -(-c // self.P) * h * w
        return -(-self.stage_sizes[stage] // self.P)

    def slot_neuron(self, stage, slot):
        """Flat neuron index of lane ``slot % P`` of word ``slot // P`` of ``stage`` (host side; at or
        past ``stage_sizes[stage]`` for a padding lane)."""
        if not self.channel_lanes(stage):
            return slot
        _, h, w = self.stages[stage].shape
        word, lane = divmod(slot, self.P)
        block, pos = divmod(word, h * w)
        return (block * self.P + lane) * h * w + pos

    @property
    def weight_stages(self):
        """Stage of each weight layer 1..L, in order."""
        return tuple(s for s, stage in enumerate(self.stages) if stage.kind in ("fc", "conv"))

    def kind(self, stage):
        return self.stages[stage].kind

    def fan_in(self, stage):
        """Synapses per neuron of a weight stage: N_in (fc) or Cin*k*k (conv)."""
        return self.stages[stage].fan_in

    def weight_count(self, stage):
        """Latent weights of a weight stage: N_out * fan-in."""
        return self.stages[stage].weight_shape[0] * self.fan_in(stage)

    @property
    def n_pixels(self):
        return self.stage_sizes[0]

    @property
    def n_classes(self):
        return self.stage_sizes[-1]

    @property
    def synapses(self):
        """Weights of the network (the debug tap's default size measure)."""
        return sum(self.weight_count(s) for s in self.weight_stages)

    # ---------------------------------------------------------------- shape
    @property
    def topology(self):
        """The network: layer sizes for a fully connected one (``16-12-4``; a 14x14 map input is
        ``196-...``), the topology text for a conv one."""
        if self.is_conv:
            return self.cfg.topology
        return "-".join(map(str, self.stage_sizes))

    @property
    def sizes(self):
        """What ``LaneShape`` and the host side see (class docstring): the stage sizes of a fully
        connected topology, the host matrix chain of a conv one."""
        if not self.is_conv:
            return self.stage_sizes
        return _host_chain([self.weight_words(s) for s in self.weight_stages], self.P)

    def weight_words(self, stage):
        """Words weight stage ``stage`` uses: P output neurons (channels) of one synapse (tap) a word,
        block-major, ceil(N_out / P) * fan-in (at P = 1 the canonical row-major order)."""
        return -(-self.stages[stage].weight_shape[0] // self.P) * self.fan_in(stage)

    @property
    def T(self):
        return self.cfg.time_steps

    @property
    def time_bits(self):
        return self.T.bit_length()          # times 0 .. T (T = silent)

    def w_depth(self, layer):
        """Words of weight memory ``layer`` (1..L): block-major, b*fan_in + i holds output neurons (conv:
        channels) b*P .. b*P + P-1 of synapse i (conv: tap ci*k*k + ky*k + kx); at P = 1 the canonical
        row-major order. A conv topology's host chain may give a few unused words more."""
        return self.blocks(layer) * self.sizes[layer - 1]

    @property
    def addr_bits(self):
        """Weight word address bits, as ``WeightBank`` derives them."""
        return max(ceil_log2(max(self.w_depth(l), 2)) for l in range(1, self.L + 1))

    @property
    def thresholds(self):
        """Theta per weight layer 1..L (the config's, or the golden defaults)."""
        if self.cfg.thresholds is not None:
            return tuple(self.cfg.thresholds)
        return default_thresholds(self.stages, self.cfg)

    @property
    def max_fan_in(self):
        """The largest fan-in of a weight stage: sizes I, U and the debug words."""
        return max(self.fan_in(s) for s in self.weight_stages)

    @property
    def max_fc_fan_in(self):
        """The largest pre stage of an fc stage: sizes the spike lists of the fc forward pass."""
        return max(self.stage_sizes[s - 1] for s in self.weight_stages if self.kind(s) == "fc")

    def fan_out(self, stage):
        """Synapses leaving one pre neuron of weight stage ``stage``: N_out (fc), Cout*k*k (conv)."""
        st = self.stages[stage]
        return st.shape[0] * (st.k * st.k if st.kind == "conv" else 1)

    @property
    def disp_stages(self):
        """Weight stages that send a displacement down (their pre stage is not the input)."""
        return tuple(s for s in self.weight_stages if s >= 2)

    @property
    def disp_bits(self):
        """Width of D: |D_j| <= fan-out * 2**(WBITS-1) << lvl_max (§3), lvl 0 from the ternary output error."""
        q, wb = self.cfg.levels, self.cfg.weight_bits
        bounds = [self.fan_out(s) << (wb - 1 + (0 if s == self.top else q)) for s in self.disp_stages]
        return signed_bits(max(bounds, default=1))

    @property
    def hidden_blocks(self):
        """Words of the displacement memory: the largest stage that receives D."""
        return max([self.stage_blocks(s - 1) for s in self.disp_stages], default=1)

    @property
    def quantised_stages(self):
        """Stages whose D is quantised into an error (§9.5–9.6): the weight stages below the top."""
        return tuple(s for s in self.weight_stages if s != self.top)

    def under_pool(self, stage):
        """``stage`` receives its D through the pooling stage above it (§9.4)."""
        return stage + 1 < len(self.stages) and self.kind(stage + 1) == "pool"

    @property
    def unpooled_words(self):
        """Words of the unpooled displacement memory: the largest stage that receives D through pooling."""
        return max([self.stage_blocks(s) for s in self.quantised_stages if self.under_pool(s)], default=0)

    # ---------------------------------------------------------------- stream layouts
    @property
    def label_layout(self):
        """label; train (0 = inference); step (global training-sample counter, dropout key §10.3);
        lr_shift[l-1] = R of weight layer l for this sample's epoch (§9.1 schedule, host side). An R
        of time_bits + Q + 1 or more gives every step 0, so the host may clamp R to 255."""
        return data.StructLayout({
            "label": unsigned(max(ceil_log2(self.n_classes), 1)),
            "train": 1,
            "step": unsigned(32),
            "lr_shift": data.ArrayLayout(unsigned(8), self.L),
        })

    @property
    def result_layout(self):
        """pred (§7), the output spike times, cycles from start to result (pixel loading excluded)."""
        return data.StructLayout({
            "pred": unsigned(max(ceil_log2(self.n_classes), 1)),
            "times": data.ArrayLayout(unsigned(self.time_bits), self.n_classes),
            "cycles": unsigned(32),
        })

    @property
    def debug_value_bits(self):
        fan = self.max_fan_in + 1
        return max(signed_bits(fan * (self.T - 1)), self.disp_bits, self.time_bits + 1,
                   max(ceil_log2(self.n_classes), 1) + 1)

    @property
    def debug_aux_bits(self):
        taps = max([st.k * st.k for st in self.stages if st.kind == "pool"], default=1)
        return max(signed_bits(self.max_fan_in + 1), (self.cfg.levels + 1).bit_length() + 1, 4, signed_bits(taps))

    @property
    def max_slot(self):
        """The largest first slot of a record of a conv stage at P > 1 (0 otherwise)."""
        return max([(self.stage_blocks(s) - 1) * self.P for s in range(self.top + 1) if self.channel_lanes(s)],
                   default=0)

    @property
    def debug_layout(self):
        return data.StructLayout({
            "kind": unsigned(4),
            "layer": range(len(self.stages)),
            "t": unsigned(self.time_bits),
            "n": unsigned(max(max(self.stage_sizes), self.max_slot).bit_length()),
            "value": data.ArrayLayout(signed(self.debug_value_bits), self.P),
            "aux": data.ArrayLayout(signed(self.debug_aux_bits), self.P),
        })


    # ---------------------------------------------------------------- derived constants of the phases
    @property
    def dropout(self):
        """Dropout of hidden pres in the update (§10.3): only a network with a hidden stage has any."""
        return self.cfg.drop8 > 0 and self.L >= 2

    @property
    def membrane_bits(self):
        """Width of U (and I): |U| <= (F + 1)(T - 1) for the largest fan-in F."""
        return signed_bits((self.max_fan_in + 1) * (self.T - 1))

    @property
    def max_lr_shift(self):
        """R above the step's width (time bits + Q + 1) gives a zero step: R is clamped there."""
        return self.time_bits + self.cfg.levels + 1

    @property
    def err_layout(self):
        """A word of the error memory: (sign, level) of P neurons."""
        return data.StructLayout({
            "sign": data.ArrayLayout(signed(2), self.P),
            "level": data.ArrayLayout(range(self.cfg.levels + 1), self.P),
        })

    @cached_property
    def weight_layer(self):
        """Stage -> its weight layer 1..L (the weight memory ``w<l>``, the host's layer l - 1)."""
        return {s: l for l, s in enumerate(self.weight_stages, start=1)}

    def threshold(self, stage):
        """Theta of weight stage ``stage`` at U's width: a Theta above every reachable U stays unreachable."""
        top = (1 << (self.membrane_bits - 1)) - 1
        return Const(min(self.thresholds[self.weight_layer[stage] - 1], top), signed(self.membrane_bits))

    def lanes(self, shape):
        """A word of P lanes of ``shape``."""
        return data.ArrayLayout(shape, self.P)
