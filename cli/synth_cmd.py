"""``mfsnn synth``: build a training core (desire BP or STiDi-BP) into a bitstream with the YoWASP tools
and report what it took.

    mfsnn synth --board icebreaker --rule desire --topology 8-4-2 --out build/ice
    mfsnn synth --board ulx3s-85f --rule stidi --topology 28x28-c5x8-p2-c5x16-p2-10 --out build/csnn
    mfsnn synth --compare build/ice build/ecp5

Wired into ``mfsnn`` by ``add_parser(subparsers)``; ``run(args)`` returns the exit status:
0 built and clean, 1 a tool failed or the result breaks a rule (DSP blocks used, Fmax below the
board clock), 2 bad options, a missing tool or a configuration the pre-check refuses (one line on
stderr, nothing written).
"""

import shlex
import sys
from pathlib import Path

# synth_flow's BOARDS and ROUTERS, named here so the parser is built without importing Amaranth
BOARD_NAMES = ("icebreaker", "ulx3s-85f", "ulx3s-45f", "ulx3s-25f")
ROUTER_NAMES = ("router1", "router2")
#: --weight-bits when not given, per rule (DesireConfig's profile, StidiConfig.weight_bits)
DEFAULT_WEIGHT_BITS = {"desire": 24, "stidi": 16}


class _OptionError(Exception):
    pass


def add_parser(subparsers):
    p = subparsers.add_parser(
        "synth", help="build a training core (desire BP or STiDi-BP) into an FPGA bitstream (YoWASP tools) and "
                      "report its size and Fmax",
        description="Synthesize, place and route the desire-BP or STiDi-BP core for a board with Yosys and nextpnr "
                    "(YoWASP), then write DIR/report.json: LUTs, FFs, carries, block RAM, SPRAM, DSP (must be 0), "
                    "memory bits, Fmax against the board clock and the target, tool versions, wall time per "
                    "stage, machine load. A pre-check refuses a configuration whose memories cannot fit the "
                    "device. --compare prints earlier reports side by side.")
    p.add_argument("--board", choices=BOARD_NAMES, help="target board")
    p.add_argument("--rule", choices=tuple(DEFAULT_WEIGHT_BITS), default="desire",
                   help="learning rule of the core: desire backpropagation or binarized STiDi-BP (default desire)")
    p.add_argument("--topology", help="layer sizes, e.g. 196-64-10; stidi also conv/pooling maps, e.g. "
                                      "28x28-c5x8-p2-c5x16-p2-10 (docs/golden-spec-stidi.md)")
    p.add_argument("--weight-bits", type=int, metavar="N",
                   help="desire: weight profile 24, 20, 16, 12, 10 or 8 (default 24); stidi: latent weight bits "
                        "2..32 (default 16)")
    p.add_argument("--parallelism", "-P", type=int, default=1, metavar="P",
                   help="lanes, a power of two (default 1; a stidi conv topology above 1 needs a pooling layer "
                        "after every conv layer)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("--router", choices=ROUTER_NAMES,
                   help="nextpnr routing algorithm (default: router2 for an ECP5 design the pre-check estimates "
                        "above a quarter of the device, router1 otherwise)")
    p.add_argument("--clock-mhz", type=float, metavar="F",
                   help="place-and-route target in MHz (default: iCE40 30, ECP5 60); the bitstream runs at "
                        "the board clock (12 / 25 MHz)")
    p.add_argument("--force", action="store_true",
                   help="run the tools even when the pre-check says the design cannot fit")
    p.add_argument("--out", metavar="DIR", help="build directory: tool files, logs, bitstream, report.json")
    p.add_argument("--compare", nargs="+", metavar="DIR",
                   help="print the report.json of these build directories side by side, build nothing")
    p.set_defaults(func=run)
    return p


def _validate(args):
    """(params, board) for a build, or _OptionError with one line; reads nothing from disk, writes nothing."""
    from .rtl.synth_flow import BOARDS

    missing = [option for option, value in (("--board", args.board), ("--topology", args.topology),
                                            ("--out", args.out)) if value is None]
    if missing:
        raise _OptionError(f"{', '.join(missing)} required (or --compare DIR...)")
    if args.seed < 0:
        raise _OptionError(f"--seed must be >= 0, not {args.seed}")
    if args.clock_mhz is not None and not 0 < args.clock_mhz <= 1000:
        raise _OptionError(f"--clock-mhz must be in (0, 1000], not {args.clock_mhz:g}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise _OptionError(f"--out {args.out} exists and is not a directory")
    weight_bits = DEFAULT_WEIGHT_BITS[args.rule] if args.weight_bits is None else args.weight_bits
    params = (_desire_params if args.rule == "desire" else _stidi_params)(args, weight_bits)
    return params, BOARDS[args.board]


def _desire_params(args, weight_bits):
    from .golden.desire_config import DesireConfig, parse_topology
    from .rtl.core import CoreParams

    # each step names the option it checks
    for option, check in (("--topology", lambda: parse_topology(args.topology)),
                          ("--weight-bits", lambda: DesireConfig.for_weight_bits(weight_bits)),
                          ("--parallelism", lambda: CoreParams(DesireConfig(), args.parallelism))):
        try:
            check()
        except (ValueError, TypeError) as error:
            raise _OptionError(f"{option}: {error}") from None
    try:
        cfg = DesireConfig.for_weight_bits(weight_bits, topology=parse_topology(args.topology))
        return CoreParams(cfg, args.parallelism)
    except (ValueError, TypeError) as error:
        raise _OptionError(f"--topology {args.topology} --weight-bits {weight_bits} "
                           f"--parallelism {args.parallelism}: {error}") from None


def _stidi_params(args, weight_bits):
    """``StidiCoreParams`` of the integer model's defaults with this topology and latent weight width."""
    from .golden.desire_config import ConfigError
    from .golden.stidi import StidiConfig, parse_stidi_topology
    from .rtl.stidi_core import StidiCoreParams

    try:
        parse_stidi_topology(args.topology)
    except ValueError as error:
        raise _OptionError(f"--topology: {error}") from None
    options = {"topology": f"--topology {args.topology}", "weight_bits": f"--weight-bits {weight_bits}"}
    try:
        cfg = StidiConfig(topology=args.topology, weight_bits=weight_bits)
    except ConfigError as error:
        problems = error.problems
    else:
        problems = StidiCoreParams.config_problems(cfg)
    if problems:
        fields, text = problems[0]
        given = [options[field] for field in fields if field in options]
        raise _OptionError(f"{', '.join(given) or '--topology'}: {text}")
    try:
        return StidiCoreParams(cfg, args.parallelism)
    except (ValueError, TypeError) as error:
        raise _OptionError(f"--parallelism {args.parallelism}: {error}") from None


def _validate_compare(args):
    building = [option for option, value in (("--board", args.board), ("--topology", args.topology),
                                             ("--out", args.out)) if value is not None]
    if building:
        raise _OptionError(f"--compare reads existing reports; drop {', '.join(building)}")
    missing = [d for d in args.compare if not (Path(d) / "report.json").is_file()]
    if missing:
        raise _OptionError(f"no report.json in {', '.join(missing)}")


def run(args) -> int:
    from .rtl.synth_flow import SynthError, compare_reports, synthesize

    try:
        if args.compare:
            _validate_compare(args)
            print(compare_reports(args.compare))
            return 0
        params, board = _validate(args)
        report = synthesize(params, board, args.out, seed=args.seed, target_mhz=args.clock_mhz,
                            router=args.router, force=args.force,
                            command=shlex.join(["mfsnn", *sys.argv[1:]]),
                            log=lambda line: print(line, flush=True))
    except (_OptionError, SynthError) as error:
        print(f"mfsnn synth: error: {error}", file=sys.stderr)
        return 2
    return 1 if report["problems"] else 0
