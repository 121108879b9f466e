"""Verilog generation: the single generator used by simulation, synthesis and ``mfsnn verilog``."""

from amaranth.back import verilog

from ..golden.desire_config import DesireConfig
from .core import CoreParams, DesireCore

TOP_NAME = "desire_core"


def make_core(cfg: DesireConfig, parallelism: int = 1, debug: bool = False, core_class=DesireCore,
              single_port=()) -> DesireCore:
    return core_class(CoreParams(cfg, parallelism, debug, single_port))


def generate_verilog(cfg: DesireConfig, parallelism: int = 1, debug: bool = False, name: str = TOP_NAME,
                     core_class=DesireCore, single_port=()) -> str:
    """Verilog of the desire-BP core for ``cfg`` with ``parallelism`` lanes (debug stream if ``debug``,
    the memories named in ``single_port`` single-port, see ``CoreParams``).
    ``core_class`` lets tests build a deliberately broken subclass through the same path."""
    return verilog.convert(make_core(cfg, parallelism, debug, core_class, single_port), name=name, emit_src=False)
