"""Parameters of the desire-BP core: ``CoreParams``, the hardware shape derived from a golden
``DesireConfig``, shared by the core (rtl/core.py) and its phases (rtl/desire_*.py)."""

import operator
from dataclasses import dataclass

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

from ..golden.desire_config import DesireConfig
from .skeleton import LaneShape

__all__ = ["CoreParams"]


def _pow2(n):
    return n >= 1 and n & (n - 1) == 0


@dataclass(frozen=True)
class CoreParams(LaneShape):
    """Hardware shape derived from a golden ``DesireConfig`` plus parallelism and debug."""
    cfg: DesireConfig
    parallelism: int = 1
    debug: bool = False
    #: Weight (``w<l>``) and trace-snapshot (``x<l>``) memories built single-port (``WordMemory``
    #: kind "single", SPRAM on iCE40 UltraPlus); the controller then never reads and writes one of
    #: them in the same cycle, at the cost of a stall cycle where it would.
    single_port: frozenset = frozenset()
    #: The weight memories' ports are registered (``WordMemory(registered=True)``): a W word arrives
    #: two cycles after its address. W_1 of 784-128-10 at P=16 is 140 block RAMs across the ECP5 die,
    #: and the route from the phases' address logic to all of them was the longest path. The hidden
    #: desire and update phases are written for this latency (their pipelines take the word at a fixed
    #: stage); the forward pass's delay line follows it.
    weight_read_latency = 2

    def __post_init__(self):
        p = operator.index(self.parallelism)
        if not _pow2(p) or p > 256:
            raise ValueError(f"parallelism must be a power of two in 1..256, not {self.parallelism!r}")
        if self.cfg.time_steps > 255:
            raise ValueError("time_steps must be <= 255")
        if isinstance(self.single_port, str):
            raise TypeError(f"single_port must be a collection of memory names, not the string {self.single_port!r}")
        object.__setattr__(self, "single_port", frozenset(self.single_port))
        unknown = sorted(self.single_port - set(self.single_port_candidates))
        if unknown:
            raise ValueError(f"single_port names unknown memories {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(self.single_port_candidates)}")

    @property
    def single_port_candidates(self):
        """Memories that may be single-port: the weights and trace snapshots of every layer."""
        return tuple(f"{kind}{l}" for kind in "wx" for l in range(1, len(self.cfg.topology)))

    @property
    def sizes(self):
        return tuple(self.cfg.topology)

    def w_depth(self, layer):
        return self.blocks(layer) * self.sizes[layer - 1]

    def acc_bits(self, layer):
        return self.cfg.weight_bits + self.sizes[layer - 1].bit_length() + 1

    def desire_bits(self, layer):
        return self.cfg.desire_bits(layer) + 2

    @property
    def lane_acc_bits(self):
        """Accumulator width of the NeuronLanes all layers share."""
        return max(self.acc_bits(l) for l in range(1, self.L + 1))

    @property
    def lane_desire_bits(self):
        """Sum width of the DesireLanes all hidden layers share."""
        return max(self.desire_bits(l) for l in range(2, self.L + 1))

    def maskable(self, layer):
        return layer < self.L and self.cfg.keep_threshold(layer) < 1 << 16

    @property
    def accum_bits(self):
        return self.cfg.trace_bits + self.cfg.time_steps.bit_length()

    @property
    def max_left_shift(self):
        return max(0, -self.cfg.update_shift(0))

    @property
    def debug_lanes(self):
        return max(self.P, 1)

    @property
    def debug_value_bits(self):
        widths = [self.cfg.membrane_bits, self.cfg.trace_bits + 1]
        widths += [self.desire_bits(l) for l in range(2, self.L + 1)]
        return max(widths)

    @property
    def debug_aux_bits(self):
        return self.cfg.count_bits + 1

    @property
    def addr_bits(self):
        return max(ceil_log2(max(self.w_depth(l) for l in range(1, self.L + 1))), 1)

    @property
    def label_layout(self):
        return data.StructLayout({
            "label": unsigned(max(ceil_log2(self.sizes[-1]), 1)),
            "train": 1,
            "step": unsigned(32),
            "shift": signed(8),
        })

    @property
    def result_layout(self):
        n = self.sizes[-1]
        return data.StructLayout({
            "pred": unsigned(max(ceil_log2(n), 1)),
            "tie": 1,
            "counts": data.ArrayLayout(unsigned(self.cfg.count_bits), n),
            "cycles": unsigned(32),
        })

    @property
    def debug_layout(self):
        return data.StructLayout({
            "kind": unsigned(4),
            "layer": unsigned(4),
            "t": unsigned(8),
            "n": unsigned(16),
            "value": data.ArrayLayout(signed(self.debug_value_bits), self.debug_lanes),
            "aux": data.ArrayLayout(unsigned(self.debug_aux_bits), self.debug_lanes),
        })

