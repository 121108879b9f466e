"""Settings, constants and host-side initialisation of desire backpropagation.

This module is the host side: it turns the user's settings (probabilities, thresholds in float
units) into the integer constants the datapath uses, and draws the initial weights. The datapath
itself (``mfsnn.golden.desire``) only sees integers. See docs/golden-spec.md for every width.
"""

import math
from dataclasses import asdict, dataclass

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
    time_steps: int = 20                 # T
    error_margin: int = 4                # TM = T - error_margin, the label's target count
    decay_shift: int = 2                 # V <- V - (V >> DS): decay 0.75
    weight_bits: int = 24                # WBITS, signed, saturating
    weight_frac_bits: int = 20           # FW: threshold 1.0 == 1 << FW
    trace_frac_bits: int = 8             # FX: an input spike adds 1 << FX to the trace
    pixel_max: int = 255                 # input coder threshold
    output_desire_threshold: float = 0.30
    hidden_desire_threshold: float = 0.05
    dropout: tuple[float, float] = (0.0, 0.3)   # (input, hidden) drop probabilities; output never drops
    # learning rate 2**-lr_shift at epoch 0. 16 (1.5e-5) rather than 17 (0.76e-5) around the authors'
    # 1e-5: measured +1.6 (MNIST) / +2.5 (Fashion-MNIST) points after one epoch (README, Results).
    lr_shift: int = 16
    lr_halving_epochs: int = 17          # lr halves every this many epochs (exp(-0.04 e) rounded)
    # hidden-desire error weight: "exact" (bit planes) or "pow2" (leading one only). exact measured
    # 2.3 points better on Fashion-MNIST and equal on MNIST (README, Results).
    error_mode: str = "exact"
    rounding: str = "nearest"            # update rounding: "nearest" (half up) or "stochastic" (hashed)
    seed: int = 1

    def __post_init__(self):
        problems = []
        if len(self.topology) < 2 or min(self.topology) < 1:
            problems.append(f"topology {self.topology} needs >= 2 layers of >= 1 neuron")
        if max(self.topology) > 1 << 16:
            problems.append("layers wider than 65536 neurons do not fit the 16-bit neuron field of the hash")
        if not 1 <= self.time_steps <= 255:
            problems.append(f"time_steps {self.time_steps} outside 1..255")
        if not 0 <= self.error_margin < self.time_steps:
            problems.append(f"error_margin {self.error_margin} must be in 0..time_steps-1")
        if not 1 <= self.decay_shift <= 8:
            problems.append(f"decay_shift {self.decay_shift} outside 1..8")
        if not 2 <= self.weight_bits <= 32:
            problems.append(f"weight_bits {self.weight_bits} outside 2..32")
        if not 0 <= self.weight_frac_bits < self.weight_bits + MEMBRANE_INT_BITS - 1:
            problems.append(f"weight_frac_bits {self.weight_frac_bits} impossible for {self.weight_bits}-bit weights")
        if not 0 <= self.trace_frac_bits <= 16:
            problems.append(f"trace_frac_bits {self.trace_frac_bits} outside 0..16")
        if len(self.dropout) != 2 or not all(0.0 <= p < 1.0 for p in self.dropout):
            problems.append(f"dropout {self.dropout} must be two probabilities in [0, 1)")
        if self.error_mode not in ERROR_MODES:
            problems.append(f"error_mode {self.error_mode!r} not in {ERROR_MODES}")
        if self.rounding not in ROUNDINGS:
            problems.append(f"rounding {self.rounding!r} not in {ROUNDINGS}")
        if self.rounding == "stochastic" and max(self.topology) > 1 << 12:
            problems.append("stochastic rounding hashes neuron indices in 12-bit fields: layers must be <= 4096")
        if not 0 <= self.seed < 1 << 32:
            problems.append(f"seed {self.seed} must fit 32 bits")
        if problems:
            raise ValueError("invalid desire-BP configuration: " + "; ".join(problems))

    @classmethod
    def for_weight_bits(cls, weight_bits: int, **settings) -> "DesireConfig":
        if weight_bits not in WEIGHT_PROFILES:
            raise ValueError(f"no weight profile for {weight_bits} bits; choose one of {sorted(WEIGHT_PROFILES)}")
        return cls(weight_bits=weight_bits, weight_frac_bits=WEIGHT_PROFILES[weight_bits], **settings)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> "DesireConfig":
        settings = dict(settings)
        settings["topology"] = tuple(settings["topology"])
        settings["dropout"] = tuple(settings["dropout"])
        return cls(**settings)

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
