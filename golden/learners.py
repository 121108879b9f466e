"""Learner objects (see ``learner.Learner``) for each rule and arithmetic, and the rule registry."""

import dataclasses

import numpy as np

from . import desire, desire_float
from .data import INPUT_SIZES, input_pixels
from .desire_config import DesireConfig, parse_topology

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
        self.weights = [np.asarray(w, dtype=dtype) for w in weights]

    def _pixels(self, images):
        return input_pixels(images, self.cfg.topology[0])

    def train_samples(self, images, labels, first_step: int, epoch: int) -> np.ndarray:
        pixels = self._pixels(images)
        correct = np.zeros(len(pixels), dtype=bool)
        for k, (x, y) in enumerate(zip(pixels, labels)):
            if self.arith == "fixed":
                self.weights, counts = desire.train_sample(self.cfg, self.weights, x, int(y), first_step + k, epoch,
                                                           in_place=True)
            else:
                self.weights, counts = desire_float.train_sample_float(
                    self.cfg, self.float_settings, self.weights, x, int(y), first_step + k, epoch)
            correct[k] = desire.classify(counts) == y
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
        cfg = DesireConfig.from_dict(settings["config"])
        weights = [arrays[f"W{layer}"] for layer in range(1, cfg.layers + 1)]
        return cls(cfg, settings["arith"], weights, desire_float.FloatSettings(**settings.get("float", {})))


def make_learner(rule: str, arith: str, topology: str, seed: int, weight_bits: int | None = None,
                 **options):
    """A freshly initialised learner. ``options`` are rule-specific settings (e.g. error_mode)."""
    if rule == "desire":
        sizes = parse_topology(topology)
        float_lr = options.pop("float_lr", None)
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(DesireConfig)})
        if unknown:
            raise ValueError(f"option(s) {', '.join(unknown)} do not apply to rule desire")
        cfg = DesireConfig.for_weight_bits(weight_bits or 24, topology=sizes, seed=seed, **options)
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
    if settings.get("rule") == "desire":
        return DesireLearner.from_saved(settings, arrays)
    if settings.get("rule") == "stidi":
        from .stidi import stidi_learner_from_saved
        return stidi_learner_from_saved(settings, arrays)
    raise ValueError(f"saved model has unknown rule {settings.get('rule')!r}")
