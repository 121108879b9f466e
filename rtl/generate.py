"""Verilog generation: the single generator used by simulation, synthesis and ``mfsnn verilog``.

One core per learning rule, chosen by the type of its parameters: ``CoreParams`` builds the
desire-BP ``DesireCore`` (top ``desire_core``), ``StidiCoreParams`` the STiDi-BP ``StidiCore``
(top ``stidi_core``).
"""

from amaranth.back import verilog

from ..golden.desire_config import DesireConfig
from .core import CoreParams, DesireCore
from .stidi_core import StidiCore, StidiCoreParams

TOP_NAME = "desire_core"
STIDI_TOP_NAME = "stidi_core"

#: parameter class -> (rule, core class, Verilog top name)
CORES = {CoreParams: ("desire", DesireCore, TOP_NAME), StidiCoreParams: ("stidi", StidiCore, STIDI_TOP_NAME)}


def core_kind(params) -> tuple:
    """(rule, core class, top name) of ``params``; TypeError for anything but a core's parameters."""
    try:
        return CORES[type(params)]
    except KeyError:
        raise TypeError(f"params must be one of {', '.join(c.__name__ for c in CORES)}, not {params!r}") from None


def core_verilog(params, core_class=None, name: str | None = None) -> str:
    """Verilog of ``core_class(params)`` (default: the rule's core of ``params``), top module ``name``
    (default: the rule's). ``core_class`` lets tests build a deliberately broken subclass."""
    _, default_class, top = core_kind(params)
    core = (core_class or default_class)(params)
    return verilog.convert(core, name=name or top, emit_src=False)


def make_core(cfg: DesireConfig, parallelism: int = 1, debug: bool = False, core_class=DesireCore,
              single_port=()) -> DesireCore:
    return core_class(CoreParams(cfg, parallelism, debug, single_port))


def generate_verilog(cfg: DesireConfig, parallelism: int = 1, debug: bool = False, name: str = TOP_NAME,
                     core_class=DesireCore, single_port=()) -> str:
    """Verilog of the desire-BP core for ``cfg`` with ``parallelism`` lanes (debug stream if ``debug``,
    the memories named in ``single_port`` single-port, see ``CoreParams``).
    ``core_class`` lets tests build a deliberately broken subclass through the same path."""
    return core_verilog(CoreParams(cfg, parallelism, debug, single_port), core_class, name)


def generate_stidi_verilog(params: StidiCoreParams, name: str = STIDI_TOP_NAME, core_class=StidiCore) -> str:
    """Verilog of the STiDi-BP core for ``params`` (config, parallelism, debug tap)."""
    if not isinstance(params, StidiCoreParams):
        raise TypeError(f"params must be StidiCoreParams, not {params!r}")
    return core_verilog(params, core_class, name)
