"""Settings, constants and host-side initialisation of desire backpropagation.

This module is the host side: it turns the user's settings (probabilities, thresholds in float
units) into the integer constants the datapath uses, and draws the initial weights. The datapath
itself (``mfsnn.golden.desire``) only sees integers. See docs/golden-spec.md for every width.
"""

import math
import numbers
import types
import typing
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .hashing import mix32, mix32_int

#: weight_bits -> (fractional bits of W and V). 24 is the notes' Q3.20 profile (|W| < 8); narrower
#: profiles keep |W| < 4 (Q2.f), which holds every weight the float reference reaches in one epoch.
WEIGHT_PROFILES = {24: 20, 20: 16, 16: 13, 12: 9, 10: 7, 8: 5}
#: V keeps 12 integer bits (|V| < 2048 thresholds) above the weight fraction.
MEMBRANE_INT_BITS = 12
ERROR_MODES = ("pow2", "exact")
ROUNDINGS = ("nearest", "stochastic")
#: Key salt of the stochastic-rounding hash, so its stream never collides with the dropout masks.
ROUNDING_SALT = 0x5EED
#: Largest update shift SH the integer update can take: it adds 1 << (SH - 1) to int64 sums.
MAX_UPDATE_SHIFT = 62


# ------------------------------------------------------------------------------------------------
# Declared settings: each config field states its type (annotation) and what values it takes
# (metadata), so the constructor, model loading and the CLI's --set all check the same declaration.
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bounds:
    """The values a numeric setting (or each entry of a tuple setting) may take; None: no limit."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False               # low itself excluded
    high_open: bool = False              # high itself excluded

    def __contains__(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            if not (self.low_open or self.high_open):
                return f"in {self.low}..{self.high}"
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


def setting(default, *, bounds: Bounds | None = None, choices: tuple | None = None, arith: str | None = None,
            example=None):
    """A config field with its declared values: ``bounds`` (of each entry, for a tuple), ``choices``
    (text), ``arith`` when only that arithmetic reads it, ``example`` for messages when the default is None."""
    metadata = {"bounds": bounds, "choices": choices, "arith": arith, "example": example}
    return field(default=default, metadata={key: value for key, value in metadata.items() if value is not None})


class ConfigError(ValueError):
    """An impossible configuration; ``problems`` pairs the fields concerned with what is wrong, so a
    caller (the CLI) can name the option that set each field."""

    def __init__(self, what: str, problems):
        self.problems = tuple(problems)
        super().__init__(f"invalid {what} configuration: " + "; ".join(text for _, text in self.problems))


def _optional(annotation):
    """The X of ``X | None``, else None."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return inner
    return None


def coerce_value(annotation, value):
    """``value`` as JSON gives it (lists for tuples) as the type ``annotation`` declares: lists become
    tuples, integers in a float field floats. TypeError when it is not of that type (a bool is no number)."""
    inner = _optional(annotation)
    if inner is not None:
        return None if value is None else coerce_value(inner, value)
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(coerce_value(args[0], entry) for entry in value)
            if len(value) == len(args):
                return tuple(coerce_value(arg, entry) for arg, entry in zip(args, value))
    elif isinstance(value, (bool, np.bool_)):
        if annotation is bool:
            return bool(value)
    elif annotation is int and isinstance(value, numbers.Integral):
        return int(value)
    elif annotation is float and isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    elif annotation is str and isinstance(value, str):
        return value
    raise TypeError(f"{value!r} is not {describe_type(annotation)}")


def describe_type(annotation, plural: bool = False) -> str:
    """'an integer', 'a list of 2 numbers', ... for messages (``X | None`` reads as X)."""
    inner = _optional(annotation)
    if inner is not None:
        return describe_type(inner, plural)
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        count = "" if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} "
        return f"{'lists' if plural else 'a list'} of {count}{describe_type(args[0], plural=True)}"
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false",) * 2,
             str: ("text", "texts")}
    return names[annotation][plural]


def field_problems(config_field, value) -> list[str]:
    """What is wrong with ``value`` (already of the declared type) against the field's bounds or choices."""
    name, choices, bounds = config_field.name, config_field.metadata.get("choices"), config_field.metadata.get("bounds")
    if choices is not None and value not in choices:
        return [f"{name} {value!r} not in {choices}"]
    if bounds is None or value is None:
        return []
    if isinstance(value, tuple):
        return [] if all(entry in bounds for entry in value) else [f"{name} {value}: each entry must be {bounds}"]
    return [] if value in bounds else [f"{name} {value} must be {bounds}"]


def declared_problems(config) -> list[tuple[tuple[str, ...], str]]:
    """(field, problem) of every field of the dataclass ``config`` that breaks its declaration."""
    problems = []
    for config_field in fields(config):
        value = getattr(config, config_field.name)
        try:
            coerce_value(config_field.type, value)
        except TypeError:
            problems.append(((config_field.name,),
                             f"{config_field.name} {value!r} is not {describe_type(config_field.type)}"))
            continue
        problems += [((config_field.name,), text) for text in field_problems(config_field, value)]
    return problems


def tuples_from_json(value):
    """JSON lists (at any depth) back to the tuples the configs hold."""
    return tuple(tuples_from_json(entry) for entry in value) if isinstance(value, list) else value


def parse_topology(text: str) -> tuple[int, ...]:
    """'784-128-10' -> (784, 128, 10): input size, hidden sizes, output size."""
    try:
        sizes = tuple(int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"topology {text!r}: expected layer sizes joined by '-', e.g. 784-128-10") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"topology {text!r}: needs an input and an output size, all >= 1")
    if sizes[-1] < 2:
        raise ValueError(f"topology {text!r}: the output layer needs at least 2 classes")
    return sizes


@dataclass(frozen=True)
class DesireConfig:
    """Everything that defines the integer desire-BP model. Defaults are the notes' MNIST defaults."""

    topology: tuple[int, ...] = (784, 128, 10)
    time_steps: int = setting(20, bounds=Bounds(1, 255))                # T
    error_margin: int = setting(4, bounds=Bounds(0))     # TM = T - error_margin, the label's target count
    decay_shift: int = setting(2, bounds=Bounds(1, 8))   # V <- V - (V >> DS): decay 0.75
    weight_bits: int = setting(24, bounds=Bounds(2, 32))                # WBITS, signed, saturating
    weight_frac_bits: int = setting(20, bounds=Bounds(0))               # FW: threshold 1.0 == 1 << FW
    # FX: an input spike adds 1 << FX to the trace
    trace_frac_bits: int = setting(8, bounds=Bounds(0, 16), arith="fixed")
    pixel_max: int = setting(255, bounds=Bounds(1), arith="fixed")      # input coder threshold
    output_desire_threshold: float = setting(0.30, bounds=Bounds(0.0, 1.0))   # fractions of TM
    hidden_desire_threshold: float = setting(0.05, bounds=Bounds(0.0, 1.0))
    # "satisfied" check of hidden neurons (0 = off, the authors' rule): a hidden neuron that wants +1
    # and already spikes this many times or more does not care (no potentiation, no part in the desire
    # of the layer below), like the label neuron at TM - K_OUT; stops want=+1 rows running away
    hidden_satisfied_count: int = setting(0, bounds=Bounds(0, 255))
    # (input, hidden) drop probabilities; output never drops
    dropout: tuple[float, float] = setting((0.0, 0.3), bounds=Bounds(0.0, 1.0, high_open=True))
    # learning rate 2**-lr_shift at epoch 0. 16 (1.5e-5) rather than 17 (0.76e-5) around the authors'
    # 1e-5: measured +1.6 (MNIST) / +2.5 (Fashion-MNIST) points after one epoch (README, Results).
    # At most 32: SH = lr_shift + FX - FW + epoch // 17 then stays <= MAX_UPDATE_SHIFT for 255 epochs at any
    # FX and FW (mfsnn train checks longer runs).
    lr_shift: int = setting(16, bounds=Bounds(0, 32), arith="fixed")
    # lr halves every this many epochs (exp(-0.04 e) rounded); the float reference decays by lr_decay
    lr_halving_epochs: int = setting(17, bounds=Bounds(1), arith="fixed")
    # hidden-desire error weight: "exact" (bit planes) or "pow2" (leading one only). exact measured
    # 2.3 points better on Fashion-MNIST and equal on MNIST (README, Results).
    error_mode: str = setting("exact", choices=ERROR_MODES, arith="fixed")
    # update rounding: "nearest" (half up) or "stochastic" (hashed)
    rounding: str = setting("nearest", choices=ROUNDINGS, arith="fixed")
    seed: int = setting(1, bounds=Bounds(0, (1 << 32) - 1))

    def __post_init__(self):
        problems = declared_problems(self)
        if problems:                     # the checks below compare values: they need the declared types
            raise ConfigError("desire-BP", problems)
        if len(self.topology) < 2 or min(self.topology) < 1:
            problems.append((("topology",), f"topology {self.topology} needs >= 2 layers of >= 1 neuron"))
        elif max(self.topology) > 1 << 16:
            problems.append((("topology",),
                             "layers wider than 65536 neurons do not fit the 16-bit neuron field of the hash"))
        elif self.rounding == "stochastic" and max(self.topology) > 1 << 12:
            problems.append((("rounding", "topology"),
                             "stochastic rounding hashes neuron indices in 12-bit fields: layers must be <= 4096"))
        if self.hidden_satisfied_count > self.time_steps:
            problems.append((("hidden_satisfied_count", "time_steps"),
                             f"hidden_satisfied_count {self.hidden_satisfied_count} above time_steps {self.time_steps}:"
                             " no neuron spikes that often (0 turns the check off)"))
        if self.error_margin >= self.time_steps:
            problems.append((("error_margin", "time_steps"),
                             f"error_margin {self.error_margin} must be in 0..time_steps-1 ({self.time_steps - 1})"))
        if self.weight_frac_bits >= self.weight_bits + MEMBRANE_INT_BITS - 1:
            problems.append((("weight_frac_bits", "weight_bits"),
                             f"weight_frac_bits {self.weight_frac_bits} impossible for {self.weight_bits}-bit weights"))
        if problems:
            raise ConfigError("desire-BP", problems)

    @classmethod
    def for_weight_bits(cls, weight_bits: int, **settings) -> "DesireConfig":
        if weight_bits not in WEIGHT_PROFILES:
            raise ValueError(f"no weight profile for {weight_bits} bits; choose one of {sorted(WEIGHT_PROFILES)}")
        return cls(weight_bits=weight_bits, weight_frac_bits=WEIGHT_PROFILES[weight_bits], **settings)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> "DesireConfig":
        """The config ``to_dict`` (then JSON) gave; ValueError for settings it did not write."""
        unknown = sorted(set(settings) - {config_field.name for config_field in fields(cls)})
        if unknown:
            raise ValueError(f"unknown desire-BP settings {unknown}")
        if "topology" not in settings:
            raise ValueError("desire-BP settings without a topology")
        return cls(**{key: tuples_from_json(value) for key, value in settings.items()})

    # --- derived integer constants (docs/golden-spec.md, "Constants") ---
    @property
    def layers(self) -> int:
        """Number of weight layers L (layer 0 is the input)."""
        return len(self.topology) - 1

    @property
    def target_count(self) -> int:
        """TM: the spike count the label neuron aims for."""
        return self.time_steps - self.error_margin

    @property
    def membrane_bits(self) -> int:
        return self.weight_frac_bits + MEMBRANE_INT_BITS

    @property
    def trace_bits(self) -> int:
        """Unsigned trace width: the trace never exceeds 1 << (FX + DS) (docs/golden-spec.md)."""
        return self.trace_frac_bits + self.decay_shift + 1

    @property
    def count_bits(self) -> int:
        return self.time_steps.bit_length()

    @property
    def theta(self) -> int:
        """Eval-mode threshold of every layer: 1.0."""
        return 1 << self.weight_frac_bits

    def drop_probability(self, layer: int) -> float:
        """Drop probability of layer 0..L (0 = input; the output layer L never drops)."""
        if layer == 0:
            return self.dropout[0]
        return self.dropout[1] if layer < self.layers else 0.0

    def train_threshold(self, layer: int) -> int:
        """Train-mode threshold of layer 1..L: inverted dropout of the feeding layer moved into θ(1-p)."""
        return round((1.0 - self.drop_probability(layer - 1)) * self.theta)

    def keep_threshold(self, layer: int) -> int:
        """A neuron of ``layer`` is kept iff (hash >> 16) < this (16-bit) value; 65536 = never drop."""
        return round((1.0 - self.drop_probability(layer)) * 65536)

    @property
    def k_out(self) -> int:
        """Output desire: a neuron cares iff its count error exceeds K_OUT = floor(thr_out * TM)."""
        return math.floor(self.output_desire_threshold * self.target_count + 1e-9)

    @property
    def k_lin(self) -> int:
        """Hidden desire: care iff |D| >= K_LIN = ceil(thr_hid * TM * 2**FW) (D in 1/TM and W units)."""
        return math.ceil(self.hidden_desire_threshold * self.target_count * self.theta - 1e-9)

    def update_shift(self, epoch: int) -> int:
        """SH: dW = round(A >> SH), A in trace units (2**-FX), W in 2**-FW, lr = 2**-(lr_shift + halvings)."""
        return self.lr_shift + epoch // self.lr_halving_epochs + self.trace_frac_bits - self.weight_frac_bits

    def learning_rate(self, epoch: int) -> float:
        return 2.0 ** -(self.lr_shift + epoch // self.lr_halving_epochs)

    def desire_bits(self, layer: int) -> int:
        """Signed width of D_i = sum_j g_j e_j W_l[j, i] for the layer-``layer`` weights."""
        fan_out = self.topology[layer]
        return self.weight_bits + fan_out.bit_length() + self.time_steps.bit_length() + 1


def _uniform16(key, shape) -> np.ndarray:
    """Uniform integers in [0, 2**16) from mix32 of a per-element key (order-independent)."""
    counter = np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
    return (mix32(np.uint32(key) ^ counter) >> np.uint32(16)).astype(np.int64)


def init_weights(cfg: DesireConfig, seed: int | None = None) -> list[np.ndarray]:
    """Kaiming-normal-like integer weights W_l of shape (N_l, N_{l-1}), int64, host-side.

    z = sum of 12 uniform 16-bit draws minus their mean (Irwin-Hall: mean 0, std 2**16, |z| <= 6 std),
    then W = (z * round(sqrt(2 / fan_in) * 2**FW) + 2**15) >> 16, saturated to WBITS. Integer only, so
    the same seed gives the same weights on every machine. The float reference starts from W / 2**FW.
    """
    seed = cfg.seed if seed is None else seed
    weights = []
    lo, hi = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1
    for layer in range(1, cfg.layers + 1):
        shape = (cfg.topology[layer], cfg.topology[layer - 1])
        z = -6 * (1 << 16) + sum(
            _uniform16(mix32_int(seed ^ (layer << 24) ^ (draw << 16)), shape) for draw in range(12))
        scale = round(math.sqrt(2.0 / shape[1]) * (1 << cfg.weight_frac_bits))
        weights.append(np.clip((z * scale + (1 << 15)) >> 16, lo, hi).astype(np.int64))
    return weights


def constants_table(cfg: DesireConfig, epoch: int = 0) -> str:
    """Markdown table of every integer constant and width of ``cfg`` (docs/golden-spec.md embeds one)."""
    rows = [
        ("T", cfg.time_steps, "time steps per sample"),
        ("TM", cfg.target_count, "label target count, T - error_margin"),
        ("DS", cfg.decay_shift, "decay shift: V - (V >> DS), trace likewise"),
        ("WBITS", cfg.weight_bits, "weight width, signed, saturating"),
        ("FW", cfg.weight_frac_bits, "fractional bits of W and V"),
        ("VBITS", cfg.membrane_bits, "membrane width, signed, saturating (FW + 12)"),
        ("FX", cfg.trace_frac_bits, "trace fractional bits"),
        ("XBITS", cfg.trace_bits, "trace width, unsigned (max 2**(FX+DS))"),
        ("CBITS", cfg.count_bits, "spike-count width, unsigned"),
        ("THETA", cfg.theta, "inference threshold, all layers"),
    ]
    rows += [(f"TH_TRAIN[{layer}]", cfg.train_threshold(layer), "training threshold of layer (dropout in θ)")
             for layer in range(1, cfg.layers + 1)]
    rows += [(f"KEEP16[{layer}]", cfg.keep_threshold(layer), "keep iff (hash >> 16) < KEEP16 (65536: no draw)")
             for layer in range(cfg.layers)]
    rows += [
        ("K_OUT", cfg.k_out, "output desire threshold on the count error"),
        ("K_LIN", cfg.k_lin, "hidden desire threshold on \\|D\\|"),
        (f"SH(epoch {epoch})", cfg.update_shift(epoch), "update shift: lr_shift + epoch // 17 + FX - FW"),
    ]
    rows += [(f"DBITS[{layer}]", cfg.desire_bits(layer), "signed width of the desire sum into layer-1")
             for layer in range(2, cfg.layers + 1)]
    lines = ["| name | value | meaning |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {meaning} |" for name, value, meaning in rows]
    return "\n".join(lines)
