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
    try:
        learner = make_learner(args.rule, args.arith, args.topology, args.seed, args.weight_bits, **options)
    except (ValueError, TypeError) as error:
        raise UserError(str(error)) from None
    dataset = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out)
    print(f"mfsnn {__version__}: training {args.rule}/{args.arith} {args.topology} on {dataset.name} "
          f"({dataset.source}), {args.epochs} epoch(s), seed {args.seed} -> {out}", flush=True)
    metrics = training.train(learner, dataset, args.epochs, args.seed, args.train_limit, args.test_limit,
                             progress=not args.quiet)
    metrics["topology"] = args.topology
    training.save_model(learner, out / "model.npz", {"dataset": dataset.name, "epochs": args.epochs,
                                                     "topology": args.topology, "seed": args.seed})
    training.write_metrics(metrics, out / "metrics.json")
    training.plot_curve(metrics, out / "accuracy.png")
    print(f"test accuracy {100 * metrics['final_test_accuracy']:.2f} %  "
          f"(train {metrics['train_samples_per_s']:.0f} samples/s, infer {metrics['infer_samples_per_s']:.0f} samples/s)")
    print(f"wrote {out / 'metrics.json'}, {out / 'model.npz'}, {out / 'accuracy.png'}")
    return 0


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
                   help="desire: hidden-desire error weight, leading one (pow2, default) or exact")
    p.add_argument("--rounding", choices=("nearest", "stochastic"),
                   help="desire: weight-update rounding (default nearest)")
    p.add_argument("--dropout", type=float, nargs=2, metavar=("P_IN", "P_HID"),
                   help="desire: input and hidden drop probabilities (default 0.0 0.3)")
    p.add_argument("--lr-shift", type=int, metavar="S",
                   help="desire: learning rate 2^-S at epoch 0 (default 17, i.e. 7.6e-6 ~ the authors' 1e-5; "
                        "14 learns faster on the small built-in set)")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="desire, float only: learning rate at epoch 0 (default 1e-5, the authors')")
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
