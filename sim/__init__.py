"""Bit-exact verification of the desire-BP RTL against the golden model.

* ``run_bitexact`` (cocotb: Icarus or Verilator) and ``check_amaranth`` (Amaranth's simulator);
* ``Report``: counters of compared values, cycles per sample, first divergence.
"""

from .model import Report, Sample
from .runner import SIMULATORS, run_bitexact, simulator_available

__all__ = ["Report", "Sample", "SIMULATORS", "run_bitexact", "simulator_available", "check_amaranth"]


def check_amaranth(*args, **kwargs):
    from .amaranth_tb import check_amaranth as impl
    return impl(*args, **kwargs)
