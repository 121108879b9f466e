"""The ``mfsnn`` command line: one entry point, one subcommand per job.

Every subcommand starts with its ``validate_*`` step (section "Validation"): each option is checked
for type and range, against the dataset, the RTL and the model file, and the optional tools the
command needs are looked for. A bad command line is refused in one line on stderr, naming the
option and the fix, with exit status 2, before any data is loaded, anything is trained, generated
or simulated, and before anything is written.
"""

import os

# The golden models do many small matrix products per sample: BLAS threads only add overhead
# (measured 4x slower per sample with threads on this 2-core machine). Must precede numpy's import.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import typing  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from . import __version__  # noqa: E402


class UserError(Exception):
    """A problem with the user's input: printed as one line, no traceback, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a malformed command line is refused in one line (not the usage block), status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------------------
# Validation: one validate_* step per subcommand, run before the command does any work
# ------------------------------------------------------------------------------------------------

#: mfsnn train options that set a field of one rule's config when given: option -> (field, rule).
#: Each args attribute is named like its field.
TRAIN_FIELD_OPTIONS = {
    "--error-mode": ("error_mode", "desire"),
    "--rounding": ("rounding", "desire"),
    "--dropout": ("dropout", "desire"),
    "--lr-shift": ("lr_shift", "desire"),
    "--forward": ("forward", "stidi"),
}
#: Config fields that always come from their own option, never from --set.
ARGUMENT_FIELDS = {"topology": "--topology", "seed": "--seed", "arith": "--arith", "weight_bits": "--weight-bits",
                   "weight_frac_bits": "--weight-bits (it picks the weight profile)"}
READERS = {"fixed": "the integer model", "float": "the float reference"}


def _at_least(option: str, value, low: int = 1) -> None:
    if value is not None and value < low:
        raise UserError(f"{option} must be at least {low}, not {value}")


def _check_seed(seed: int) -> None:
    """Both rules take any 32-bit seed (STiDi-BP maps 0, which xorshift32 cannot take, to its default)."""
    if not 0 <= seed < 1 << 32:
        raise UserError(f"--seed {seed}: must be in 0..{(1 << 32) - 1}")


def _check_output(option: str, path, directory: bool) -> None:
    """Refuse an output path that cannot become a ``directory`` (else a file); creates nothing."""
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a directory")
    if not directory and path.is_dir():
        raise UserError(f"{option} {path}: is a directory; give a file name")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK):
        raise UserError(f"{option} {path}: no permission to write in {existing}")


def _check_data_options(args) -> None:
    if args.data_dir is not None:
        if args.dataset == "builtin":
            raise UserError("--data-dir applies to --dataset mnist or fashion-mnist (the built-in set ships with "
                            "mfsnn)")
        directory = Path(args.data_dir).expanduser()
        if not directory.is_dir():
            raise UserError(f"--data-dir {args.data_dir}: {'not a' if directory.exists() else 'no such'} directory")
    _at_least("--train-limit", getattr(args, "train_limit", None))
    _at_least("--test-limit", getattr(args, "test_limit", None))


def _check_topology(rule: str, topology: str, dataset: str) -> None:
    """The topology parses and classifies the dataset's images: 784 or 196 inputs, one output per class."""
    from .golden.data import INPUT_SIZES, N_CLASSES
    from .golden.learners import topology_io

    try:
        n_inputs, n_classes = topology_io(rule, topology)
    except ValueError as error:
        raise UserError(f"--topology: {error}") from None
    if n_inputs not in INPUT_SIZES:
        raise UserError(f"--topology {topology}: input size {n_inputs} is not an image size: supported sizes are "
                        f"{' and '.join(map(str, INPUT_SIZES))} (28x28 and its 2x2 downsampling)")
    if n_classes != N_CLASSES:
        raise UserError(f"--topology {topology}: the output layer has {n_classes} neurons but {dataset} has "
                        f"{N_CLASSES} classes; end the topology with -{N_CLASSES}")


def _check_weight_profile(weight_bits: int) -> None:
    from .golden.desire_config import WEIGHT_PROFILES

    if weight_bits not in WEIGHT_PROFILES:
        raise UserError(f"--weight-bits {weight_bits}: no weight profile for {weight_bits} bits; choose one of "
                        f"{', '.join(map(str, sorted(WEIGHT_PROFILES, reverse=True)))}")


def _config_field(config_class, name: str):
    return next(field for field in dataclasses.fields(config_class) if field.name == name)


def _takes(field) -> str:
    """What a config field takes, from its declaration: 'an integer in 1..255', 'one of max, l2', ..."""
    from .golden.desire_config import describe_type

    choices, bounds = field.metadata.get("choices"), field.metadata.get("bounds")
    if choices:
        return "one of " + ", ".join(choices)
    what = describe_type(field.type)
    optional = type(None) in typing.get_args(field.type)
    if bounds is not None:
        holds_entries = tuple in (typing.get_origin(field.type),
                                  *(typing.get_origin(arg) for arg in typing.get_args(field.type)))
        what = f"{what}, each {bounds}" if holds_entries else f"{what} {bounds}"
    return f"{what} (or null: the default)" if optional else what


def _example(field, option: str) -> str:
    """``option`` (``--set``: ``--set KEY=``) given the field's default, or its declared example."""
    value = field.default if field.default is not None else field.metadata["example"]
    if option == "--set":
        return f"--set {field.name}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
    return f"{option} {' '.join(map(str, value)) if isinstance(value, tuple) else value}"


def _checked(config_class, name: str, value, label: str, option: str, arith: str | None = None,
             reader_of: str | None = None):
    """``value`` as field ``name`` of ``config_class`` declares it (type, bounds, choices, arithmetic);
    UserError naming ``label`` (the option as given) otherwise. ``reader_of``: what reads the
    ``arith`` arithmetic, where it is not ``--arith`` (the RTL)."""
    from .golden.desire_config import coerce_value, field_problems

    field = _config_field(config_class, name)
    reader = field.metadata.get("arith")
    if arith is not None and reader is not None and reader != arith:
        raise UserError(f"{label}: {name} is read only by {READERS[reader]} (--arith {reader}), "
                        f"not by {reader_of or f'--arith {arith}'}")
    try:
        value = coerce_value(field.type, value)
    except TypeError:
        value_ok = False
    else:
        value_ok = not field_problems(field, value)
    if not value_ok:
        raise UserError(f"{label}: {name} takes {_takes(field)}, e.g. {_example(field, option)}")
    return value


def _parse_settings(items, config_class, title: str, arith: str, given: dict, own_options: dict = ARGUMENT_FIELDS,
                    reader_of: str | None = None) -> tuple[dict, dict]:
    """({field: value}, {field: label}) of the ``--set KEY=VALUE`` items, each value checked against
    its field's declaration. ``given``: field -> option of the dedicated options the user gave;
    ``own_options``: the fields only their own option sets (field -> option)."""
    settings, labels = {}, {}
    known = [field.name for field in dataclasses.fields(config_class)]
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        label = f"--set {item}"
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set levels=3")
        if key not in known:
            settable = [name for name in known if name not in own_options]
            raise UserError(f"{label}: unknown {title} options {[key]}; known: {', '.join(settable)}")
        if key in own_options:
            raise UserError(f"{label}: {key} has its own option: use {own_options[key]}")
        if key in given:
            raise UserError(f"{label} duplicates {given[key]}: give one")
        if key in settings:
            raise UserError(f"--set {key} given twice: give one")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if _config_field(config_class, key).type is str and not isinstance(value, str):
            value = text             # text settings are taken as typed: --set error_norm=max
        settings[key] = _checked(config_class, key, value, label, "--set", arith, reader_of)
        labels[key] = label
    return settings, labels


def _config_error(error, labels: dict) -> UserError:
    """A config constructor's ConfigError, each problem led by the options that set its fields."""
    return _problems_error(error.problems, labels)


def _problems_error(problems, labels: dict) -> UserError:
    """(fields, text) problems as one UserError, each problem led by the options that set its fields."""
    parts = []
    for names, text in problems:
        options = [labels[name] for name in names if name in labels]
        parts.append(f"{', '.join(options)}: {text}" if options else text)
    return UserError("; ".join(parts))


def _check_epochs_against_shift(cfg, epochs: int) -> None:
    """The integer desire update's shift grows as the learning rate halves; past MAX_UPDATE_SHIFT the
    int64 rounding would overflow."""
    from .golden.desire_config import MAX_UPDATE_SHIFT

    if cfg.update_shift(epochs - 1) > MAX_UPDATE_SHIFT:
        most = (MAX_UPDATE_SHIFT - cfg.update_shift(0) + 1) * cfg.lr_halving_epochs
        raise UserError(f"--epochs {epochs}: the learning rate halves every {cfg.lr_halving_epochs} epochs and "
                        f"its update shift would pass {MAX_UPDATE_SHIFT} bits; give at most {most} epochs or a "
                        f"smaller --lr-shift")


def _check_simulator(simulator: str) -> None:
    """cocotb and the simulator's tools, with the install hint (sim/runner.py knows what each needs)."""
    from .sim.runner import simulator_problem

    problem = simulator_problem(simulator)
    if problem is not None:
        raise UserError(f"--simulator {simulator}: {problem}")


def validate_train(args):
    """The learner ``mfsnn train`` will train, built from fully checked options."""
    from .golden.desire_config import ConfigError, DesireConfig
    from .golden.learners import make_learner
    from .golden.stidi import StidiConfig

    _at_least("--epochs", args.epochs)
    _check_data_options(args)
    _check_output("--out", args.out, directory=True)
    for option, (field, rule) in TRAIN_FIELD_OPTIONS.items():
        if getattr(args, field) is not None and rule != args.rule:
            raise UserError(f"{option} does not apply to --rule {args.rule} ({rule} only)")
    if args.lr is not None:
        if args.rule != "desire":
            raise UserError("--lr does not apply to --rule stidi (its float reference takes --set lr=[...], "
                            "one rate per weight layer)")
        if args.arith != "float":
            raise UserError("--lr applies to --arith float; the integer model takes --lr-shift")
        if not (math.isfinite(args.lr) and args.lr > 0):
            raise UserError(f"--lr {args.lr}: must be a positive number, e.g. --lr 1e-5")
    _check_topology(args.rule, args.topology, args.dataset)
    _check_seed(args.seed)
    config_class, title = (DesireConfig, "desire-BP") if args.rule == "desire" else (StidiConfig, "STiDi-BP")
    labels = {"topology": f"--topology {args.topology}", "seed": f"--seed {args.seed}"}
    if args.weight_bits is not None:
        labels["weight_bits"] = labels["weight_frac_bits"] = f"--weight-bits {args.weight_bits}"
        if args.rule == "desire":
            _check_weight_profile(args.weight_bits)
        else:
            _checked(StidiConfig, "weight_bits", args.weight_bits, labels["weight_bits"], "--weight-bits", args.arith)
    options, given = {}, {}
    for option, (field, _) in TRAIN_FIELD_OPTIONS.items():
        value = getattr(args, field)
        if value is not None:
            labels[field] = f"{option} {' '.join(map(str, value)) if isinstance(value, list) else value}"
            options[field] = _checked(config_class, field, value, labels[field], option, args.arith)
            given[field] = option
    settings, set_labels = _parse_settings(args.settings, config_class, title, args.arith, given)
    options.update(settings)
    labels.update(set_labels)
    if args.lr is not None:
        options["float_lr"] = args.lr
    try:
        learner = make_learner(args.rule, args.arith, args.topology, args.seed, args.weight_bits, **options)
    except ConfigError as error:
        raise _config_error(error, labels) from None
    if args.rule == "desire" and args.arith == "fixed":
        _check_epochs_against_shift(learner.cfg, args.epochs)
    return learner


def validate_eval(args):
    """The learner in ``--model``, checked against the dataset."""
    from .golden import train as training
    from .golden.data import N_CLASSES
    from .golden.learners import topology_io

    _check_data_options(args)
    try:
        learner, _ = training.load_model(args.model)
    except training.ModelError as error:
        raise UserError(f"--model {error}") from None
    _, n_classes = topology_io(learner.rule, learner.cfg.topology)
    if n_classes != N_CLASSES:
        raise UserError(f"--model {args.model}: the model has {n_classes} output classes but {args.dataset} has "
                        f"{N_CLASSES}")
    return learner


#: Config fields the hardware commands (verilog, sim, flow) set with their own options, never with --set.
HW_ARGUMENT_FIELDS = {"topology": "--topology", "seed": "--seed", "weight_bits": "--weight-bits",
                      "weight_frac_bits": "--weight-bits (it picks the weight profile)", "time_steps": "--time-steps"}
#: What reads the integer model's settings in the hardware commands (there is no --arith there).
RTL_READER = "the RTL (the integer model)"
#: mfsnn flow's desire learning-rate shift when --lr-shift is not given (the built-in set is small).
FLOW_DESIRE_LR_SHIFT = 13


def _validate_hw(args, lr_shift: int | None = None):
    """The core parameters (``CoreParams`` or ``StidiCoreParams`` by --rule, debug tap off) of the
    options verilog, sim and flow share; ``lr_shift``: --lr-shift, or flow's default for it (desire only)."""
    if args.rule == "stidi":
        return _validate_stidi_hw(args, lr_shift)
    return _validate_desire_hw(args, lr_shift)


def _validate_desire_hw(args, lr_shift: int | None = None):
    from .golden.desire_config import ConfigError, DesireConfig, parse_topology
    from .rtl.core import CoreParams

    try:
        sizes = parse_topology(args.topology)
    except ValueError as error:
        raise UserError(f"--topology: {error}") from None
    weight_bits = DesireConfig.weight_bits if args.weight_bits is None else args.weight_bits
    _check_weight_profile(weight_bits)
    _check_seed(args.seed)
    labels = {"topology": f"--topology {args.topology}", "seed": f"--seed {args.seed}",
              "weight_bits": f"--weight-bits {weight_bits}"}
    settings, given = {"topology": sizes, "seed": args.seed}, {}
    for option, name, value in (("--time-steps", "time_steps", args.time_steps),
                                ("--error-mode", "error_mode", args.error_mode), ("--lr-shift", "lr_shift", lr_shift)):
        if value is not None:
            labels[name], given[name] = f"{option} {value}", option
            settings[name] = _checked(DesireConfig, name, value, labels[name], option)
    extra, set_labels = _parse_settings(args.settings, DesireConfig, "desire-BP", "fixed", given, HW_ARGUMENT_FIELDS,
                                        RTL_READER)
    settings.update(extra)
    labels.update(set_labels)
    try:
        cfg = DesireConfig.for_weight_bits(weight_bits, **settings)
    except ConfigError as error:
        raise _config_error(error, labels) from None
    try:
        return CoreParams(cfg, args.parallelism)
    except ValueError as error:
        raise UserError(f"--parallelism {args.parallelism}: {error}") from None


def _validate_stidi_hw(args, lr_shift: int | None = None):
    from .golden.desire_config import ConfigError
    from .golden.stidi import DEFAULT_SEED, StidiConfig, parse_stidi_topology
    from .rtl.stidi_core import StidiCoreParams

    if args.error_mode is not None:
        raise UserError("--error-mode does not apply to --rule stidi (desire only)")
    if lr_shift is not None:
        raise UserError("--lr-shift does not apply to --rule stidi (desire only; stidi takes --set lr_shift=[...], "
                        "one shift per weight layer)")
    try:
        parse_stidi_topology(args.topology)
    except ValueError as error:
        raise UserError(f"--topology: {error}") from None
    _check_seed(args.seed)
    labels = {"topology": f"--topology {args.topology}", "seed": f"--seed {args.seed}"}
    settings = {"topology": args.topology, "seed": args.seed or DEFAULT_SEED, "arith": "fixed"}
    for option, name in (("--weight-bits", "weight_bits"), ("--time-steps", "time_steps")):
        value = getattr(args, name)
        if value is not None:
            labels[name] = f"{option} {value}"
            settings[name] = _checked(StidiConfig, name, value, labels[name], option, "fixed", RTL_READER)
    extra, set_labels = _parse_settings(args.settings, StidiConfig, "STiDi-BP", "fixed", {}, HW_ARGUMENT_FIELDS,
                                        RTL_READER)
    settings.update(extra)
    labels.update(set_labels)
    try:
        cfg = StidiConfig(**settings)
    except ConfigError as error:
        raise _config_error(error, labels) from None
    problems = StidiCoreParams.config_problems(cfg)
    if problems:
        raise _problems_error(problems, labels)
    try:
        return StidiCoreParams(cfg, args.parallelism)
    except (TypeError, ValueError) as error:
        raise UserError(f"--parallelism {args.parallelism}: {error}") from None


def validate_verilog(args):
    params = _validate_hw(args, args.lr_shift)
    if args.out != "-":
        _check_output("--out", args.out, directory=False)
    return params


def validate_sim(args):
    _at_least("--samples", args.samples)
    _at_least("--inference-samples", args.inference_samples, low=0)
    params = _validate_hw(args, args.lr_shift)
    _check_data_options(args)
    _check_output("--build-dir", args.build_dir, directory=True)
    _check_simulator(args.simulator)
    return params


def validate_flow(args):
    _at_least("--epochs", args.epochs)
    _at_least("--check-samples", args.check_samples)
    _check_topology(args.rule, args.topology, args.dataset)
    desire = args.rule == "desire"
    params = _validate_hw(args, FLOW_DESIRE_LR_SHIFT if desire and args.lr_shift is None else args.lr_shift)
    if desire:
        _check_epochs_against_shift(params.cfg, args.epochs)
    _check_data_options(args)
    _check_output("--out", args.out, directory=True)
    _check_output("--build-dir", args.build_dir, directory=True)
    _check_simulator(args.simulator)
    return params


def _require_images(option: str, needed: int, split, dataset) -> None:
    """The one check that needs the data: a --data-dir may hold fewer images than the standard sets."""
    if needed > len(split.images):
        raise UserError(f"{option}: needs {needed} images but {dataset.name} has {len(split.images)} "
                        f"({dataset.source}); give fewer")


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------

#: train options that shape a run, so a resumed run takes them from its checkpoint: dest -> option
RUN_SHAPING_OPTIONS = {"rule": "--rule", "arith": "--arith", "topology": "--topology", "weight_bits": "--weight-bits",
                       "error_mode": "--error-mode", "rounding": "--rounding", "dropout": "--dropout",
                       "lr_shift": "--lr-shift", "lr": "--lr", "forward": "--forward", "settings": "--set",
                       "seed": "--seed", "dataset": "--dataset", "train_limit": "--train-limit",
                       "test_limit": "--test-limit", "out": "--out"}


def validate_resume(args):
    """(learner, checkpoint metrics) of the run in ``--resume DIR``, checked against the options."""
    from .golden import train as training

    _at_least("--epochs", args.epochs)
    _at_least("--patience", args.patience)
    defaults = build_parser().parse_args(["train"])
    for dest, option in RUN_SHAPING_OPTIONS.items():
        if getattr(args, dest) != getattr(defaults, dest):
            raise UserError(f"{option} comes from the run being resumed ({args.resume}/metrics.json); drop it")
    run = Path(args.resume)
    if not (run / "metrics.json").is_file() or not (run / "model.npz").is_file():
        raise UserError(f"--resume {run}: needs metrics.json and model.npz, as mfsnn train writes after every epoch")
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        done, seed, dataset = int(metrics["epochs_done"]), int(metrics["seed"]), str(metrics["dataset"])
        int(metrics["train_samples"]), int(metrics["test_samples"]), list(metrics["history"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"--resume {run}: metrics.json is not an mfsnn train checkpoint ({error})") from None
    try:
        learner, _ = training.load_model(run / "model.npz")
    except training.ModelError as error:
        raise UserError(f"--resume {run}: {error}") from None
    if args.epochs <= done:
        raise UserError(f"--resume {run}: the run already holds {done} epoch(s); give --epochs above {done}")
    args.dataset, args.seed, args.topology = dataset, seed, metrics.get("topology", "")
    args.rule, args.arith = learner.rule, learner.arith
    args.train_limit, args.test_limit = metrics["train_samples"], metrics["test_samples"]
    args.out = str(run)
    if args.patience is None:
        args.patience = metrics.get("patience")
    _check_data_options(args)
    return learner, metrics


def cmd_train(args) -> int:
    if args.resume:
        learner, checkpoint_metrics = validate_resume(args)
    else:
        learner, checkpoint_metrics = validate_train(args), None
        _at_least("--patience", args.patience)
    from .golden import train as training
    from .golden.data import load_dataset

    dataset = load_dataset(args.dataset, args.data_dir)
    if checkpoint_metrics is not None and len(dataset.train.images) < checkpoint_metrics["train_samples"]:
        raise UserError(f"--resume {args.resume}: trained on {checkpoint_metrics['train_samples']} images of "
                        f"{dataset.name}, but {len(dataset.train.images)} are here")
    out = Path(args.out)
    start = f"resuming after epoch {checkpoint_metrics['epochs_done']}" if checkpoint_metrics else "training"
    print(f"mfsnn {__version__}: {start} {args.rule}/{args.arith} {args.topology} on {dataset.name} "
          f"({dataset.source}), up to {args.epochs} epoch(s), seed {args.seed} -> {out}", flush=True)

    def checkpoint(metrics):
        _save_run(learner, metrics, out, dataset.name, args.topology, args.seed)

    metrics = training.train(learner, dataset, args.epochs, args.seed, args.train_limit, args.test_limit,
                             progress=not args.quiet, on_epoch=checkpoint, resume=checkpoint_metrics,
                             patience=args.patience)
    if metrics["stopped_early"]:
        checkpoint(metrics)          # records why it stopped
        print(f"stopped after epoch {metrics['epochs_done']}: {metrics['stopped_early']}")
    print(f"test accuracy {100 * metrics['final_test_accuracy']:.2f} %  (train "
          f"{metrics['train_samples_per_s']:.0f} samples/s, infer {metrics['infer_samples_per_s']:.0f} samples/s)")
    # a run resumed from a checkpoint older than best_model.npz has none until it beats its best
    best = out / "best_model.npz"
    best_note = f"{best} (epoch {metrics['best_epoch']}), " if best.is_file() else ""
    print(f"wrote {out / 'metrics.json'}, {out / 'model.npz'}, {best_note}{out / 'accuracy.png'}")
    return 0


def _save_run(learner, metrics: dict, out: Path, dataset: str, topology: str, seed: int) -> None:
    """OUT/model.npz, OUT/metrics.json and OUT/accuracy.png of a training run (so far); the model
    also as OUT/best_model.npz when its epoch has the best test accuracy so far (model.npz is the last
    epoch's, the one --resume continues from)."""
    from .golden import train as training

    metrics["topology"] = topology
    about = {"dataset": dataset, "epochs": metrics["epochs_done"], "topology": topology, "seed": seed}
    training.save_model(learner, out / "model.npz", about)
    if metrics["best_epoch"] == metrics["epochs_done"]:
        training.save_model(learner, out / "best_model.npz", about)
    training.write_metrics(metrics, out / "metrics.json")
    training.plot_curve(metrics, out / "accuracy.png")


RULE_NAMES = {"desire": "desire-BP", "stidi": "STiDi-BP"}


def cmd_verilog(args) -> int:
    params = validate_verilog(args)
    from .rtl import core_verilog

    params = dataclasses.replace(params, debug=args.debug)
    text = core_verilog(params)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: {RULE_NAMES[args.rule]} core {args.topology}, {params.cfg.weight_bits}-bit weights, "
              f"T={params.cfg.time_steps}, P={args.parallelism}{', debug tap' if args.debug else ''}")
    return 0


def _run_check(args, params, weights, images, labels, train, debug: bool | None, *, epoch: int = 0,
               start_step: int = 0):
    """The cocotb bit-exact check of ``params``'s core on these samples; the debug tap as ``debug``
    says (None: on up to the runner's DEBUG_SYNAPSE_LIMIT synapses)."""
    from .sim.runner import DEBUG_SYNAPSE_LIMIT, run_bitexact, run_stidi_bitexact, samples_of

    if args.rule == "stidi":
        if debug is None:
            debug = params.synapses <= DEBUG_SYNAPSE_LIMIT
        return run_stidi_bitexact(dataclasses.replace(params, debug=debug), weights,
                                  samples_of(images, labels, train, start_step, epoch), args.simulator,
                                  args.build_dir, seed=args.seed)
    return run_bitexact(params.cfg, weights, images, labels, args.simulator, args.build_dir, seed=args.seed,
                        train=train, parallelism=params.P, debug=debug, epoch=epoch, start_step=start_step)


def _io_sizes(params):
    """(pixels per sample, classes) of a core's parameters (a STiDi conv core's ``sizes`` are its
    host weight matrices, not its layers)."""
    if hasattr(params, "n_pixels"):
        return params.n_pixels, params.n_classes
    return params.sizes[0], params.sizes[-1]


def cmd_sim(args) -> int:
    params = validate_sim(args)
    from .golden.data import INPUT_SIZES, N_CLASSES, input_pixels, load_dataset, synthetic_samples

    n_inputs, n_classes = _io_sizes(params)
    n_total = args.samples + args.inference_samples
    if n_inputs in INPUT_SIZES and n_classes == N_CLASSES:
        dataset = load_dataset(args.dataset, args.data_dir)
        _require_images("--samples + --inference-samples", n_total, dataset.train, dataset)
        images = input_pixels(dataset.train.images[:n_total], n_inputs)
        labels, source = dataset.train.labels[:n_total], dataset.name
    else:
        images, labels = synthetic_samples(n_total, n_inputs, n_classes, args.seed)
        source = "synthetic (hashed) pixels, as the topology is not an image classifier"
    train = np.arange(n_total) < args.samples
    print(f"mfsnn sim: {args.samples} training + {args.inference_samples} inference samples of {source} through the "
          f"{args.topology} {RULE_NAMES[args.rule]} core (P={args.parallelism}) under {args.simulator}, golden weights "
          f"of seed {args.seed}", flush=True)
    if args.rule == "stidi":
        from .sim.stidi_check import initial_weights
        weights = initial_weights(params)
    else:
        from .golden import desire
        weights = desire.init_weights(params.cfg)
    report = _run_check(args, params, weights, images, labels, train, args.debug)
    print(report)
    return 0 if report.ok else 1


def cmd_flow(args) -> int:
    params = validate_flow(args)
    from .golden import train as training
    from .golden.data import input_pixels, load_dataset
    from .rtl import core_kind, core_verilog

    dataset = load_dataset(args.dataset, args.data_dir)
    n = args.check_samples
    _require_images(f"--check-samples {n}", 2 * n, dataset.test, dataset)
    out = Path(args.out)
    print(f"[1/3] training {args.topology} with the integer {RULE_NAMES[args.rule]} golden model on {dataset.name} "
          f"({args.epochs} epoch(s), seed {args.seed})", flush=True)
    if args.rule == "stidi":
        from .golden.stidi import FixedStidiLearner
        from .sim.stidi_check import learner_weights
        learner = FixedStidiLearner(params.cfg)
    else:
        from .golden.learners import DesireLearner
        learner = DesireLearner(params.cfg, "fixed")
    metrics = training.train(learner, dataset, args.epochs, args.seed, args.train_limit, args.test_limit,
                             progress=not args.quiet)
    _save_run(learner, metrics, out, dataset.name, args.topology, args.seed)
    verilog_path = out / f"{core_kind(params)[2]}.v"
    verilog_path.write_text(core_verilog(params))
    print(f"[2/3] wrote {verilog_path} (P={args.parallelism})", flush=True)
    images = input_pixels(dataset.test.images[:2 * n], _io_sizes(params)[0])
    labels = dataset.test.labels[:2 * n]
    train_flags = np.arange(2 * n) % 2 == 0          # alternate training and inference samples
    print(f"[3/3] bit-exact check under {args.simulator}: {n} training and {n} inference samples from the "
          f"trained weights", flush=True)
    trained_steps = metrics["train_samples"] * args.epochs
    # Without the debug tap: Icarus simulates the P=16 tap at ~70 cycles/s. Every output, prediction
    # and weight word is still compared after each sample; `mfsnn sim` adds every intermediate value.
    weights = learner_weights(learner) if args.rule == "stidi" else [w.copy() for w in learner.weights]
    report = _run_check(args, params, weights, images, labels, train_flags, args.debug_tap, epoch=args.epochs,
                        start_step=trained_steps)
    print()
    print(f"golden model: test accuracy {100 * metrics['final_test_accuracy']:.2f} % on {metrics['test_samples']} "
          f"{dataset.name} test images after {args.epochs} epoch(s) of {metrics['train_samples']} samples "
          f"({metrics['train_samples_per_s']:.0f} samples/s)")
    print(report)
    # The bit-exact result as fields (values expected/compared per kind, samples, cycles, first
    # divergence), plus the printed summary for people.
    summary = {"metrics": metrics,
               "bitexact": dict(report.to_dict(), ok=report.ok, parallelism=args.parallelism, summary=str(report))}
    training.write_metrics(summary, out / "flow.json")
    print(f"wrote {out / 'flow.json'}, {out / 'model.npz'}, {verilog_path}")
    return 0 if report.ok else 1


def cmd_eval(args) -> int:
    learner = validate_eval(args)
    from .golden import train as training
    from .golden.data import load_dataset

    dataset = load_dataset(args.dataset, args.data_dir)
    images, labels = dataset.test.images[:args.test_limit], dataset.test.labels[:args.test_limit]
    accuracy, rate = training.evaluate(learner, images, labels, progress=not args.quiet)
    result = {"model": str(args.model), "rule": learner.rule, "arith": learner.arith, "dataset": dataset.name,
              "test_samples": len(images), "test_accuracy": accuracy, "infer_samples_per_s": rate}
    print(json.dumps(result, indent=2) if args.json else
          f"{learner.rule}/{learner.arith} on {dataset.name}: test accuracy {100 * accuracy:.2f} % "
          f"over {len(images)} images ({rate:.0f} samples/s)")
    return 0


# ------------------------------------------------------------------------------------------------
# Parser: every default named in a --help text is the value used (taken from the configs)
# ------------------------------------------------------------------------------------------------

def _add_data_options(parser, limits: tuple = ("train", "test")):
    from .golden.data import DATASETS

    parser.add_argument("--dataset", choices=DATASETS, default="builtin",
                        help="builtin: 3000/1000 MNIST images shipped with mfsnn (default builtin); mnist and "
                             "fashion-mnist need the IDX files (see --data-dir)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="directory holding mnist/ and fashion-mnist/ IDX files (default: $MFSNN_DATA)")
    for split in limits:
        parser.add_argument(f"--{split}-limit", type=int, metavar="N",
                            help=f"use only the first N {split} images (default: all)")


def _add_hw_options(parser, topology: str, parallelism: int, lr_shift_default: int | None = None):
    """The options verilog, sim and flow share: the rule, its config and the core's parallelism
    (``lr_shift_default``: a desire --lr-shift other than the config's, flow's)."""
    from .golden.desire_config import ERROR_MODES, WEIGHT_PROFILES, DesireConfig
    from .golden.stidi import StidiConfig

    parser.add_argument("--rule", choices=("desire", "stidi"), default="desire",
                        help="learning rule of the core: desire backpropagation or binarized STiDi-BP "
                             "(default desire)")
    parser.add_argument("--topology", default=topology,
                        help=f"layer sizes (default {topology}); stidi: its topology syntax, fully connected with "
                             f"any flat input size, e.g. 16-12-4, or conv/pooling maps, e.g. 14x14-c3x4-p2-10 (at "
                             f"--parallelism > 1 a pooling layer after every conv layer; docs/golden-spec-stidi.md)")
    parser.add_argument("--weight-bits", type=int, metavar="N",
                        help=f"desire: weight profile {', '.join(map(str, sorted(WEIGHT_PROFILES, reverse=True)))} "
                             f"(when not given: {DesireConfig.weight_bits}); stidi: latent weight bits 2..32 (when "
                             f"not given: {StidiConfig.weight_bits})")
    parser.add_argument("--time-steps", type=int, metavar="T",
                        help=f"time steps per sample (when not given: desire {DesireConfig.time_steps}, stidi "
                             f"{StidiConfig.time_steps})")
    parser.add_argument("--error-mode", choices=ERROR_MODES,
                        help=f"desire: hidden-desire error weight (default {DesireConfig.error_mode})")
    parser.add_argument("--lr-shift", type=int, metavar="S",
                        help=f"desire: learning rate 2^-S (when not given: {lr_shift_default or DesireConfig.lr_shift}"
                             f"{', as the built-in set is small' if lr_shift_default else ''}); stidi takes "
                             f"--set lr_shift=[...]")
    parser.add_argument("--parallelism", "-P", type=int, default=parallelism, metavar="P",
                        help=f"synapses processed per cycle, a power of two (default {parallelism})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the initial weights and dropout (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="any other setting of the rule's integer model (repeatable; VALUE is JSON, lists as "
                             "[a,b]), e.g. --set thresholds=[40,20] --set drop8=40 for stidi; the keys are the "
                             "fields of DesireConfig / StidiConfig (docs/golden-spec*.md)")


def build_parser() -> argparse.ArgumentParser:
    from .golden.desire_config import ERROR_MODES, ROUNDINGS, WEIGHT_PROFILES, DesireConfig
    from .golden.desire_float import FloatSettings
    from .golden.stidi import FORWARD_MODES, StidiConfig

    parser = _Parser(
        prog="mfsnn",
        description="Multiplication-free spiking neural network training: integer golden models, "
                    "Amaranth RTL, bit-exact cocotb checks, open FPGA synthesis.")
    parser.add_argument("--version", action="version", version=f"mfsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a network with a golden model (integer or float)",
                       description="Online training (batch size 1) with a golden model; writes "
                                   "OUT/metrics.json, OUT/model.npz (the last epoch's), OUT/best_model.npz "
                                   "(the best test accuracy's) and OUT/accuracy.png.")
    p.add_argument("--rule", choices=("desire", "stidi"), default="desire",
                   help="learning rule: desire backpropagation or binarized STiDi-BP (default desire)")
    p.add_argument("--arith", choices=("fixed", "float"), default="fixed",
                   help="fixed: multiplication-free integer golden model (default fixed); float: reference")
    p.add_argument("--topology", default="784-128-10",
                   help="layer sizes (default 784-128-10), e.g. 196-64-10 (196 = 2x2-downsampled input); the "
                        "output layer has one neuron per class (10); stidi also takes conv topologies (see "
                        "docs/golden-spec-stidi.md)")
    p.add_argument("--weight-bits", type=int, metavar="N",
                   help=f"weight word width (desire: profiles "
                        f"{', '.join(map(str, sorted(WEIGHT_PROFILES, reverse=True)))}, default "
                        f"{DesireConfig.weight_bits}; stidi, integer model only: 2..32, default "
                        f"{StidiConfig.weight_bits})")
    p.add_argument("--error-mode", choices=ERROR_MODES,
                   help=f"desire, integer model: hidden-desire error weight, exact or its leading one (pow2) "
                        f"(default {DesireConfig.error_mode})")
    p.add_argument("--rounding", choices=ROUNDINGS,
                   help=f"desire, integer model: weight-update rounding (default {DesireConfig.rounding})")
    p.add_argument("--dropout", type=float, nargs=2, metavar=("P_IN", "P_HID"),
                   help=f"desire: input and hidden drop probabilities "
                        f"(default {' '.join(map(str, DesireConfig.dropout))})")
    p.add_argument("--lr-shift", type=int, metavar="S",
                   help=f"desire, integer model: learning rate 2^-S at epoch 0 (default {DesireConfig.lr_shift}, "
                        f"i.e. {2.0 ** -DesireConfig.lr_shift:.1e} ~ the authors' 1e-5; 14 learns faster on the "
                        f"small built-in set)")
    p.add_argument("--lr", type=float, metavar="LR",
                   help=f"desire, float only: learning rate at epoch 0 (default {FloatSettings.lr:g}, the authors')")
    p.add_argument("--forward", choices=FORWARD_MODES,
                   help=f"stidi: forward weights, sign of the latent weights (binary) or the latent weights "
                        f"themselves (real; integer: a shifted multi-bit weight, still add-only) "
                        f"(default {StidiConfig.forward})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="any other rule setting (repeatable; VALUE is JSON, lists as [a,b]), e.g. "
                        "--set error_norm=max --set levels=3 --set thresholds=[1000,150] for stidi; the "
                        "keys are the fields of DesireConfig / StidiConfig (docs/golden-spec*.md)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training images (default 1)")
    p.add_argument("--seed", type=int, default=1, help="seed of init, shuffle and dropout (default 1)")
    p.add_argument("--out", default="runs/latest", metavar="DIR", help="output directory (default runs/latest)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--patience", type=int, metavar="N",
                   help="stop once the best test accuracy has not improved for N epochs (default: run all "
                        "--epochs)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR (its metrics.json and model.npz, written after every epoch) "
                        "up to --epochs in total, with the bits of an uninterrupted run; rule, topology, "
                        "settings, seed, dataset and limits come from DIR")
    _add_data_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a saved model.npz on a test set",
                       description="Inference-only accuracy of a saved model (strict rule: ties are wrong).")
    p.add_argument("--model", required=True, metavar="PATH", help="model.npz written by mfsnn train")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_options(p, limits=("test",))
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("verilog", help="write the Verilog of a training core (desire-BP or STiDi-BP)",
                       description="Generate the Amaranth core of the rule as Verilog (the same generator the "
                                   "simulations and synthesis use).")
    _add_hw_options(p, "196-64-10", parallelism=1)
    p.add_argument("--debug", action="store_true", help="include the debug trace tap (off: costs nothing)")
    p.add_argument("--out", default="-", metavar="FILE", help="output file (default -: standard output)")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("sim", help="prove the RTL bit-exact against the golden model (cocotb)",
                       description="Stream samples through the generated RTL under a simulator and compare, bit for "
                                   "bit, every output (desire: counts; stidi: output spike times) and prediction "
                                   "and, after every training sample, every weight word with the golden model; with "
                                   "the debug tap also every intermediate value (desire: masks, spikes, membranes, "
                                   "traces, desires; stidi: input times, currents, membranes, spike times, decisions, "
                                   "targets, displacements, error levels). Prints the counts of compared values; "
                                   "exit 1 on any mismatch, with the first divergence.")
    _add_hw_options(p, "16-12-4", parallelism=1)
    p.add_argument("--debug", action=argparse.BooleanOptionalAction, default=None,
                   help="compare every intermediate value through the RTL's debug tap (default: on up to "
                        "20,000 synapses; --debug forces it at any size, --no-debug turns it off)")
    p.add_argument("--samples", type=int, default=20, metavar="N", help="training samples (default 20)")
    p.add_argument("--inference-samples", type=int, default=4, metavar="N",
                   help="inference-only samples after them (default 4)")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus", help="(default icarus)")
    p.add_argument("--build-dir", default="build/sim", metavar="DIR",
                   help="simulator builds, one subdirectory per parameter set (default build/sim)")
    _add_data_options(p, limits=())
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("flow", help="the main job: train, generate Verilog, prove it bit-exact",
                       description="Train a small network with the integer golden model of the rule, generate its "
                                   "Verilog and run the bit-exact cocotb check of training and inference on a few "
                                   "samples.")
    _add_hw_options(p, "196-64-10", parallelism=16, lr_shift_default=FLOW_DESIRE_LR_SHIFT)
    p.add_argument("--epochs", type=int, default=1, help="passes over the training images (default 1)")
    p.add_argument("--check-samples", type=int, default=4, metavar="N",
                   help="training and inference samples each in the bit-exact check (default 4)")
    p.add_argument("--debug-tap", action="store_true",
                   help="also compare every spike, membrane, trace and desire (slow under Icarus)")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus", help="(default icarus)")
    p.add_argument("--build-dir", default="build/sim", metavar="DIR",
                   help="simulator builds (default build/sim)")
    p.add_argument("--out", default="runs/flow", metavar="DIR", help="output directory (default runs/flow)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_options(p)
    p.set_defaults(func=cmd_flow)

    from . import synth_cmd
    synth_cmd.add_parser(sub)
    return parser


def main(argv=None) -> int:
    from .golden.data import DataError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:       # --help, --version, or a one-line refusal (see _Parser)
        return 0 if exit_request.code is None else exit_request.code
    try:
        return args.func(args)
    except (UserError, DataError) as error:
        print(f"mfsnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mfsnn {args.command}: interrupted", file=sys.stderr)
        return 130
