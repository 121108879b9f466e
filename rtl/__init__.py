"""Amaranth RTL of the training datapaths: desire-BP (``DesireCore``) and binarized STiDi-BP
(``StidiCore``) (see docs/rtl.md)."""

from .core import CoreParams, DebugKind, DesireCore
from .skeleton import WeightPortSignature
from .stidi_core import StidiCore, StidiCoreParams
from .generate import (STIDI_TOP_NAME, TOP_NAME, core_kind, core_verilog, generate_stidi_verilog, generate_verilog,
                       make_core)

__all__ = ["CoreParams", "DebugKind", "DesireCore", "StidiCore", "StidiCoreParams", "WeightPortSignature",
           "core_kind", "core_verilog", "generate_stidi_verilog", "generate_verilog", "make_core", "STIDI_TOP_NAME",
           "TOP_NAME"]
