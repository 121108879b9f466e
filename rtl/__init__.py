"""Amaranth RTL of the desire-BP training datapath (see docs/rtl.md)."""

from .core import CoreParams, DebugKind, DesireCore
from .skeleton import WeightPortSignature
from .generate import generate_verilog, make_core, TOP_NAME

__all__ = ["CoreParams", "DebugKind", "DesireCore", "WeightPortSignature", "generate_verilog",
           "make_core", "TOP_NAME"]
