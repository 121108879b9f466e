"""The ``mfsnn`` command line: one entry point, one subcommand per job."""

import os

# The golden models do many small matrix products per sample: BLAS threads only add overhead
# (measured 4x slower per sample with threads on this 2-core machine). Must precede numpy's import.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from . import __version__  # noqa: E402


class UserError(Exception):
    """A problem with the user's input: printed as one line, no traceback, exit status 2."""


def _add_data_options(parser):
    from .golden.data import DATASETS
    parser.add_argument("--dataset", choices=DATASETS, default="builtin",
                        help="built-in: 3000/1000 MNIST images shipped with mfsnn (default); mnist and "
                             "fashion-mnist need the IDX files (see --data-dir)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="directory holding mnist/ and fashion-mnist/ IDX files (default: $MFSNN_DATA)")
    parser.add_argument("--train-limit", type=int, metavar="N", help="use only the first N training images")
    parser.add_argument("--test-limit", type=int, metavar="N", help="use only the first N test images")


def _positive(name, value):
    if value is not None and value < 1:
        raise UserError(f"{name} must be at least 1, not {value}")


def cmd_train(args) -> int:
    from .golden import train as training
    from .golden.data import load_dataset
    from .golden.learners import make_learner

    _positive("--epochs", args.epochs)
    _positive("--train-limit", args.train_limit)
    _positive("--test-limit", args.test_limit)
    options = {}
    if args.error_mode:
        options["error_mode"] = args.error_mode
    if args.rounding:
        options["rounding"] = args.rounding
    if args.dropout:
        options["dropout"] = tuple(args.dropout)
    if args.lr_shift is not None:
        options["lr_shift"] = args.lr_shift
    if args.lr is not None:
        options["float_lr"] = args.lr
    if args.forward:
        options["forward"] = args.forward
    options.update(_parse_settings(args.settings))
    try:
        learner = make_learner(args.rule, args.arith, args.topology, args.seed, args.weight_bits, **options)
    except (ValueError, TypeError) as error:
        raise UserError(str(error)) from None
    dataset = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out)
    print(f"mfsnn {__version__}: training {args.rule}/{args.arith} {args.topology} on {dataset.name} "
          f"({dataset.source}), {args.epochs} epoch(s), seed {args.seed} -> {out}", flush=True)

    def checkpoint(metrics):
        _save_run(learner, metrics, out, dataset.name, args.topology, args.seed)

    metrics = training.train(learner, dataset, args.epochs, args.seed, args.train_limit, args.test_limit,
                             progress=not args.quiet, on_epoch=checkpoint)
    print(f"test accuracy {100 * metrics['final_test_accuracy']:.2f} %  "
          f"(train {metrics['train_samples_per_s']:.0f} samples/s, infer {metrics['infer_samples_per_s']:.0f} samples/s)")
    print(f"wrote {out / 'metrics.json'}, {out / 'model.npz'}, {out / 'accuracy.png'}")
    return 0


def _save_run(learner, metrics: dict, out: Path, dataset: str, topology: str, seed: int) -> None:
    """OUT/model.npz, OUT/metrics.json and OUT/accuracy.png of a training run (so far)."""
    from .golden import train as training

    metrics["topology"] = topology
    training.save_model(learner, out / "model.npz", {"dataset": dataset, "epochs": metrics["epochs_done"],
                                                     "topology": topology, "seed": seed})
    training.write_metrics(metrics, out / "metrics.json")
    training.plot_curve(metrics, out / "accuracy.png")


def _parse_settings(items) -> dict:
    """``KEY=VALUE`` strings to a dict; VALUE is read as JSON (numbers, lists, true) or else kept as text."""
    settings = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set levels=3")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        settings[key.strip()] = tuple(value) if isinstance(value, list) else value
    return settings


def _add_desire_hw_options(parser, topology: str):
    parser.add_argument("--rule", choices=("desire",), default="desire",
                        help="learning rule of the datapath (the RTL implements desire BP)")
    parser.add_argument("--topology", default=topology, help=f"layer sizes (default {topology})")
    parser.add_argument("--weight-bits", type=int, default=24, metavar="N",
                        help="weight profile: 24, 20, 16, 12, 10 or 8 (default 24)")
    parser.add_argument("--time-steps", type=int, default=20, metavar="T", help="time steps per sample (default 20)")
    parser.add_argument("--error-mode", choices=("pow2", "exact"), help="hidden-desire error weight")
    parser.add_argument("--parallelism", "-P", type=int, default=1, metavar="P",
                        help="synapses processed per cycle (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the initial weights and dropout (default 1)")


def _hw_config(args, **overrides):
    from .golden.desire_config import DesireConfig, parse_topology

    _positive("--parallelism", args.parallelism)
    settings = dict(topology=parse_topology(args.topology), seed=args.seed, time_steps=args.time_steps)
    if args.error_mode:
        settings["error_mode"] = args.error_mode
    settings.update(overrides)
    return DesireConfig.for_weight_bits(args.weight_bits, **settings)


def cmd_verilog(args) -> int:
    from .rtl import generate_verilog

    try:
        cfg = _hw_config(args)
        text = generate_verilog(cfg, args.parallelism, debug=args.debug)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: desire-BP core {args.topology}, {cfg.weight_bits}-bit weights, "
              f"T={cfg.time_steps}, P={args.parallelism}{', debug tap' if args.debug else ''}")
    return 0


def _check_simulator(simulator: str):
    from .sim import simulator_available

    if not simulator_available(simulator):
        hint = "apt-get install iverilog" if simulator == "icarus" else "pip install 'mfsnn[sim]'"
        raise UserError(f"simulator {simulator} is not installed ({hint})")


def cmd_sim(args) -> int:
    from .golden import desire
    from .golden.data import INPUT_SIZES, N_CLASSES, input_pixels, load_dataset, synthetic_samples
    from .sim import run_bitexact

    _positive("--samples", args.samples)
    _check_simulator(args.simulator)
    try:
        cfg = _hw_config(args)
    except ValueError as error:
        raise UserError(str(error)) from None
    n_total = args.samples + args.inference_samples
    if cfg.topology[0] in INPUT_SIZES and cfg.topology[-1] == N_CLASSES:
        dataset = load_dataset(args.dataset, args.data_dir)
        images = input_pixels(dataset.train.images[:n_total], cfg.topology[0])
        labels, source = dataset.train.labels[:n_total], dataset.name
    else:
        images, labels = synthetic_samples(n_total, cfg.topology[0], cfg.topology[-1], args.seed)
        source = "synthetic (hashed) pixels, as the topology is not an image classifier"
    train = np.arange(n_total) < args.samples
    print(f"mfsnn sim: {args.samples} training + {args.inference_samples} inference samples of {source} through the "
          f"{args.topology} core (P={args.parallelism}) under {args.simulator}, golden weights of seed {args.seed}",
          flush=True)
    report = run_bitexact(cfg, desire.init_weights(cfg), images, labels, args.simulator, args.build_dir,
                          seed=args.seed, train=train, parallelism=args.parallelism, debug=args.debug)
    print(report)
    return 0 if report.ok else 1


def cmd_flow(args) -> int:
    from .golden import train as training
    from .golden.data import input_pixels, load_dataset
    from .golden.learners import DesireLearner
    from .rtl import generate_verilog
    from .sim import run_bitexact

    _check_simulator(args.simulator)
    try:
        cfg = _hw_config(args, lr_shift=args.lr_shift)
    except ValueError as error:
        raise UserError(str(error)) from None
    dataset = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out)
    print(f"[1/3] training {args.topology} with the integer golden model on {dataset.name} "
          f"({args.epochs} epoch(s), seed {args.seed})", flush=True)
    learner = DesireLearner(cfg, "fixed")
    metrics = training.train(learner, dataset, args.epochs, args.seed, args.train_limit, args.test_limit,
                             progress=not args.quiet)
    _save_run(learner, metrics, out, dataset.name, args.topology, args.seed)
    verilog_path = out / "desire_core.v"
    verilog_path.write_text(generate_verilog(cfg, args.parallelism))
    print(f"[2/3] wrote {verilog_path} (P={args.parallelism})", flush=True)
    n = args.check_samples
    images = input_pixels(dataset.test.images[:2 * n], cfg.topology[0])
    labels = dataset.test.labels[:2 * n]
    train_flags = np.arange(2 * n) % 2 == 0          # alternate training and inference samples
    print(f"[3/3] bit-exact check under {args.simulator}: {n} training and {n} inference samples from the "
          f"trained weights", flush=True)
    trained_steps = metrics["train_samples"] * args.epochs
    # Without the debug tap: Icarus simulates the P=16 tap at ~70 cycles/s. Every output count, prediction
    # and weight word is still compared after each sample; `mfsnn sim` adds every spike and desire.
    report = run_bitexact(cfg, [w.copy() for w in learner.weights], images, labels, args.simulator,
                          args.build_dir, seed=args.seed, train=train_flags, parallelism=args.parallelism,
                          epoch=args.epochs, start_step=trained_steps, debug=args.debug_tap)
    print()
    print(f"golden model: test accuracy {100 * metrics['final_test_accuracy']:.2f} % on {metrics['test_samples']} "
          f"{dataset.name} test images after {args.epochs} epoch(s) of {metrics['train_samples']} samples "
          f"({metrics['train_samples_per_s']:.0f} samples/s)")
    print(report)
    summary = {"metrics": metrics, "bitexact": {"ok": report.ok, "report": str(report)}}
    training.write_metrics(summary, out / "flow.json")
    print(f"wrote {out / 'flow.json'}, {out / 'model.npz'}, {verilog_path}")
    return 0 if report.ok else 1


def cmd_eval(args) -> int:
    from .golden import train as training
    from .golden.data import load_dataset

    _positive("--test-limit", args.test_limit)
    try:
        learner, metadata = training.load_model(args.model)
    except training.ModelError as error:
        raise UserError(str(error)) from None
    dataset = load_dataset(args.dataset, args.data_dir)
    images, labels = dataset.test.images[:args.test_limit], dataset.test.labels[:args.test_limit]
    accuracy, rate = training.evaluate(learner, images, labels, progress=not args.quiet)
    result = {"model": str(args.model), "rule": learner.rule, "arith": learner.arith, "dataset": dataset.name,
              "test_samples": len(images), "test_accuracy": accuracy, "infer_samples_per_s": rate}
    print(json.dumps(result, indent=2) if args.json else
          f"{learner.rule}/{learner.arith} on {dataset.name}: test accuracy {100 * accuracy:.2f} % "
          f"over {len(images)} images ({rate:.0f} samples/s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfsnn",
        description="Multiplication-free spiking neural network training: integer golden models, "
                    "Amaranth RTL, bit-exact cocotb checks, open FPGA synthesis.")
    parser.add_argument("--version", action="version", version=f"mfsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a network with a golden model (integer or float)",
                       description="Online training (batch size 1) with a golden model; writes "
                                   "OUT/metrics.json, OUT/model.npz and OUT/accuracy.png.")
    p.add_argument("--rule", choices=("desire", "stidi"), default="desire",
                   help="learning rule: desire backpropagation or binarized STiDi-BP (default desire)")
    p.add_argument("--arith", choices=("fixed", "float"), default="fixed",
                   help="fixed: multiplication-free integer golden model (default); float: reference")
    p.add_argument("--topology", default="784-128-10",
                   help="layer sizes, e.g. 784-128-10 or 196-64-10 (196 = 2x2-downsampled input); "
                        "stidi also takes conv topologies (see docs/golden-spec-stidi.md)")
    p.add_argument("--weight-bits", type=int, metavar="N",
                   help="weight word width (desire: profiles 24, 20, 16, 12, 10, 8; default 24)")
    p.add_argument("--error-mode", choices=("pow2", "exact"),
                   help="desire: hidden-desire error weight, exact (default) or its leading one (pow2)")
    p.add_argument("--rounding", choices=("nearest", "stochastic"),
                   help="desire: weight-update rounding (default nearest)")
    p.add_argument("--dropout", type=float, nargs=2, metavar=("P_IN", "P_HID"),
                   help="desire: input and hidden drop probabilities (default 0.0 0.3)")
    p.add_argument("--lr-shift", type=int, metavar="S",
                   help="desire: learning rate 2^-S at epoch 0 (default 16, i.e. 1.5e-5 ~ the authors' 1e-5; "
                        "14 learns faster on the small built-in set)")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="desire, float only: learning rate at epoch 0 (default 1e-5, the authors')")
    p.add_argument("--forward", choices=("binary", "real"),
                   help="stidi: forward weights, sign of the latent weights (binary, default) or the latent "
                        "weights themselves (real; integer: a shifted multi-bit weight, still add-only)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="any other rule setting (repeatable; VALUE is JSON, else a string), e.g. "
                        "--set error_norm=max --set levels=3 --set thresholds=[1000,150] for stidi; the "
                        "keys are the fields of DesireConfig / StidiConfig (docs/golden-spec*.md)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=1, help="seed of init, shuffle and dropout (default 1)")
    p.add_argument("--out", default="runs/latest", metavar="DIR", help="output directory (default runs/latest)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a saved model.npz on a test set",
                       description="Inference-only accuracy of a saved model (strict rule: ties are wrong).")
    p.add_argument("--model", required=True, metavar="PATH", help="model.npz written by mfsnn train")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("verilog", help="write the Verilog of the desire-BP training datapath",
                       description="Generate the Amaranth desire-BP core as Verilog (the same generator the "
                                   "simulations and synthesis use).")
    _add_desire_hw_options(p, "196-64-10")
    p.add_argument("--debug", action="store_true", help="include the debug trace tap (off: costs nothing)")
    p.add_argument("--out", default="-", metavar="FILE", help="output file (default: standard output)")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("sim", help="prove the RTL bit-exact against the golden model (cocotb)",
                       description="Stream samples through the generated RTL under a simulator and compare, bit for "
                                   "bit, every output count and prediction and, after every training sample, every "
                                   "weight word with the golden model; with the debug tap also every mask, spike, "
                                   "membrane, trace and desire. Exit 1 on any mismatch, with the first divergence.")
    _add_desire_hw_options(p, "16-12-4")
    p.add_argument("--debug", action=argparse.BooleanOptionalAction, default=None,
                   help="compare every intermediate value through the RTL's debug tap (default: on up to "
                        "20,000 synapses; --debug forces it at any size, --no-debug turns it off)")
    p.add_argument("--samples", type=int, default=20, metavar="N", help="training samples (default 20)")
    p.add_argument("--inference-samples", type=int, default=4, metavar="N",
                   help="inference-only samples after them (default 4)")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus")
    p.add_argument("--build-dir", default="build/sim", metavar="DIR",
                   help="simulator builds, one subdirectory per parameter set (default build/sim)")
    p.add_argument("--dataset", default="builtin", choices=("builtin", "mnist", "fashion-mnist"),
                   help="image source (default builtin)")
    p.add_argument("--data-dir", metavar="DIR")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("flow", help="the main job: train, generate Verilog, prove it bit-exact",
                       description="Train a small network with the integer golden model, generate its Verilog and "
                                   "run the bit-exact cocotb check of training and inference on a few samples.")
    _add_desire_hw_options(p, "196-64-10")
    p.set_defaults(parallelism=16)
    p.add_argument("--lr-shift", type=int, default=13, metavar="S",
                   help="learning rate 2^-S (default 13: the built-in set is small)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--check-samples", type=int, default=4, metavar="N",
                   help="training and inference samples each in the bit-exact check (default 4)")
    p.add_argument("--debug-tap", action="store_true",
                   help="also compare every spike, membrane, trace and desire (slow under Icarus)")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus")
    p.add_argument("--build-dir", default="build/sim", metavar="DIR")
    p.add_argument("--out", default="runs/flow", metavar="DIR", help="output directory (default runs/flow)")
    p.add_argument("--quiet", action="store_true")
    _add_data_options(p)
    p.set_defaults(func=cmd_flow)

    from . import synth_cmd
    synth_cmd.add_parser(sub)
    return parser


def main(argv=None) -> int:
    from .golden.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, DataError) as error:
        print(f"mfsnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mfsnn {args.command}: interrupted", file=sys.stderr)
        return 130
