"""Learner objects (see ``learner.Learner``) for each rule and arithmetic, and the rule registry."""

import dataclasses

import numpy as np

from . import desire, desire_float
from .data import INPUT_SIZES, input_pixels
from .desire_config import DesireConfig, parse_topology
from .fixedpoint import MirroredWords

RULES = ("desire", "stidi")
ARITHMETICS = ("fixed", "float")


class DesireLearner:
    """Desire BP on integer weights (``arith="fixed"``) or float64 weights (``arith="float"``)."""

    rule = "desire"

    def __init__(self, cfg: DesireConfig, arith: str, weights=None,
                 float_settings: desire_float.FloatSettings = desire_float.FloatSettings()):
        if arith not in ARITHMETICS:
            raise ValueError(f"arith {arith!r} not in {ARITHMETICS}")
        if cfg.topology[0] not in INPUT_SIZES:
            raise ValueError(f"topology input size {cfg.topology[0]} is not an image size: supported sizes are "
                             f"{' and '.join(map(str, INPUT_SIZES))} (28x28 and its 2x2 downsampling)")
        self.cfg, self.arith, self.float_settings = cfg, arith, float_settings
        if weights is None:
            weights = desire.init_weights(cfg)
            if arith == "float":
                weights = [w / float(cfg.theta) for w in weights]
        dtype = np.int64 if arith == "fixed" else np.float64
        self.weights = [np.ascontiguousarray(w, dtype=dtype) for w in weights]    # C order: MirroredWords

    def _pixels(self, images):
        return input_pixels(images, self.cfg.topology[0])

    def train_samples(self, images, labels, first_step: int, epoch: int) -> np.ndarray:
        pixels = self._pixels(images)
        correct = np.zeros(len(pixels), dtype=bool)
        if self.arith == "fixed":
            # float64 copies of the weights for the exact sums, converted once per call instead of per sum;
            # they live only during this call, so nothing else can change the weights behind them.
            mirrored = [MirroredWords(w, self.cfg.weight_bits) for w in self.weights]
        for k, (x, y) in enumerate(zip(pixels, labels)):
            if self.arith == "fixed":
                mirrored, counts = desire.train_sample(self.cfg, mirrored, x, int(y), first_step + k, epoch,
                                                       in_place=True)
            else:
                self.weights, counts = desire_float.train_sample_float(
                    self.cfg, self.float_settings, self.weights, x, int(y), first_step + k, epoch)
            correct[k] = desire.classify(counts) == y
        if self.arith == "fixed":
            self.weights = [m.words for m in mirrored]              # the same arrays, updated in place
        return correct

    def output_counts(self, images) -> np.ndarray:
        pixels = self._pixels(images)
        if self.arith == "fixed":
            return desire.infer_counts(self.cfg, self.weights, pixels)
        return desire_float.infer_counts_float(self.cfg, self.weights, pixels)

    def predict(self, images) -> np.ndarray:
        return desire.classify(self.output_counts(images))

    def settings(self) -> dict:
        return {"rule": self.rule, "arith": self.arith, "config": self.cfg.to_dict(),
                "float": {"lr": self.float_settings.lr, "lr_decay": self.float_settings.lr_decay}}

    def weight_arrays(self) -> dict:
        return {f"W{layer + 1}": w for layer, w in enumerate(self.weights)}

    @classmethod
    def from_saved(cls, settings: dict, arrays: dict) -> "DesireLearner":
        if "config" not in settings:
            raise ValueError("desire settings without their config")
        cfg = DesireConfig.from_dict(settings["config"])
        sizes = cfg.topology
        _check_arrays(arrays, {f"W{layer}": (sizes[layer], sizes[layer - 1]) for layer in range(1, cfg.layers + 1)},
                      integer=settings.get("arith") == "fixed")
        float_settings = settings.get("float", {})
        unknown = sorted(set(float_settings) - {f.name for f in dataclasses.fields(desire_float.FloatSettings)})
        if unknown:
            raise ValueError(f"unknown float settings {unknown}")
        weights = [arrays[f"W{layer}"] for layer in range(1, cfg.layers + 1)]
        return cls(cfg, settings.get("arith"), weights, desire_float.FloatSettings(**float_settings))


def _check_arrays(arrays: dict, shapes: dict, integer: bool) -> None:
    """ValueError unless ``arrays`` holds each named array in its shape (and integer, for the integer models)."""
    for name, shape in shapes.items():
        if name not in arrays:
            raise ValueError(f"array {name} is missing")
        if np.shape(arrays[name]) != tuple(shape):
            raise ValueError(f"array {name} has shape {np.shape(arrays[name])}, the topology needs {tuple(shape)}")
        if integer and not np.issubdtype(np.asarray(arrays[name]).dtype, np.integer):
            raise ValueError(f"array {name} holds {np.asarray(arrays[name]).dtype} values; the integer model "
                             f"needs integers")


def topology_io(rule: str, topology) -> tuple[int, int]:
    """(pixels per image, output classes) of a topology of ``rule``: text, or a desire config's tuple.
    ValueError (naming the topology) when it does not parse."""
    if rule == "stidi":
        from .stidi import parse_stidi_topology
        parsed = parse_stidi_topology(topology)
        return parsed.n_pixels, parsed.layers[-1][1]
    sizes = parse_topology(topology) if isinstance(topology, str) else tuple(topology)
    return sizes[0], sizes[-1]


#: make_learner's own arguments: an option of the same name would set them twice.
_ARGUMENT_FIELDS = ("topology", "seed", "weight_bits", "weight_frac_bits")


def make_learner(rule: str, arith: str, topology: str, seed: int, weight_bits: int | None = None,
                 **options):
    """A freshly initialised learner. ``options`` are rule-specific settings (e.g. error_mode)."""
    if rule == "desire":
        sizes = parse_topology(topology)
        float_lr = options.pop("float_lr", None)
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(DesireConfig)})
        if unknown:
            raise ValueError(f"option(s) {', '.join(unknown)} do not apply to rule desire")
        clashes = sorted(set(options) & set(_ARGUMENT_FIELDS))
        if clashes:
            raise ValueError(f"option(s) {', '.join(clashes)} are set by make_learner's own arguments "
                             f"(topology, seed and weight_bits, which picks the weight profile)")
        cfg = DesireConfig.for_weight_bits(DesireConfig.weight_bits if weight_bits is None else weight_bits,
                                           topology=sizes, seed=seed, **options)
        if float_lr is None:
            return DesireLearner(cfg, arith)
        if arith != "float":
            raise ValueError("a float learning rate applies to --arith float; the integer model takes --lr-shift")
        return DesireLearner(cfg, arith, float_settings=desire_float.FloatSettings(lr=float_lr))
    if rule == "stidi":
        from .stidi import make_stidi_learner
        return make_stidi_learner(arith, topology, seed, weight_bits, **options)
    raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")


def learner_from_saved(settings: dict, arrays: dict):
    """The learner ``settings()`` and ``weight_arrays()`` describe; ValueError when they do not fit together."""
    if settings.get("rule") == "desire":
        return DesireLearner.from_saved(settings, arrays)
    if settings.get("rule") == "stidi":
        from .stidi import StidiConfig, build_stages, parse_stidi_topology, stidi_learner_from_saved, weight_layers
        cfg = StidiConfig.from_dict(settings)
        stages = build_stages(parse_stidi_topology(cfg.topology))
        shapes = {f"w{layer}": stages[layer].weight_shape for layer in weight_layers(stages)}
        if cfg.arith == "float" and cfg.forward == "binary":
            shapes.update({f"alpha{layer}": () for layer in weight_layers(stages)})
        _check_arrays(arrays, shapes, integer=cfg.arith == "fixed")
        return stidi_learner_from_saved(settings, arrays)
    raise ValueError(f"saved model has unknown rule {settings.get('rule')!r}")
