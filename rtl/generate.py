"""Verilog generation: the single generator used by simulation, synthesis and ``mfsnn verilog``."""

from amaranth.back import verilog

from ..golden.desire_config import DesireConfig
from .core import CoreParams, DesireCore

TOP_NAME = "desire_core"


def make_core(cfg: DesireConfig, parallelism: int = 1, debug: bool = False, core_class=DesireCore) -> DesireCore:
    return core_class(CoreParams(cfg, parallelism, debug))


def generate_verilog(cfg: DesireConfig, parallelism: int = 1, debug: bool = False, name: str = TOP_NAME,
                     core_class=DesireCore) -> str:
    """Verilog of the desire-BP core for ``cfg`` with ``parallelism`` lanes (debug stream if ``debug``).
    ``core_class`` lets tests build a deliberately broken subclass through the same path."""
    return verilog.convert(make_core(cfg, parallelism, debug, core_class), name=name, emit_src=False)
