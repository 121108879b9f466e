"""Bit-exact verification of the training cores' RTL against their golden models.

* desire-BP: ``run_bitexact`` (cocotb: Icarus or Verilator) and ``check_amaranth`` (Amaranth's simulator);
* STiDi-BP: ``run_stidi_bitexact`` (cocotb) and ``check_stidi`` (Amaranth's simulator), one checker
  (sim/stidi_check.py) for both;
* ``Report`` / ``StidiReport``: counters of compared values, cycles per sample, first divergence.
"""

from .model import Report, Sample
from .runner import SIMULATORS, run_bitexact, run_stidi_bitexact, samples_of, simulator_available
from .stidi_check import StidiReport, check_stidi

__all__ = ["Report", "Sample", "SIMULATORS", "StidiReport", "run_bitexact", "run_stidi_bitexact", "samples_of",
           "simulator_available", "check_amaranth", "check_stidi"]


def check_amaranth(*args, **kwargs):
    from .amaranth_tb import check_amaranth as impl
    return impl(*args, **kwargs)
