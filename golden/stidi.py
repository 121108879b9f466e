"""Binarized STiDi-BP: settings, topology syntax, host-side constants, and the two learners.

* ``arith="fixed"``: the multiplication-free integer golden model (datapath in
  :mod:`mfsnn.golden.stidi_fixed`), bit-exact target of the RTL.
* ``arith="float"``: the float reference (:mod:`mfsnn.golden.stidi_float`): STiDi-BP with
  L2-normalized errors, real (``forward="real"``) or binarized (``forward="binary"``) forward weights.

This module is the host side: it parses the topology, computes the encoding ROM, patch index
tables and default thresholds, draws the initial weights with xorshift32, and wraps everything in
the :class:`~mfsnn.golden.learner.Learner` interface. The spec is docs/golden-spec-stidi.md.

Topology syntax (``parse_stidi_topology``)::

    INPUT-LAYER-...-LAYER-CLASSES
    INPUT  = 784 | 196          flat input (196 = 2x2-downsampled image)
           | <n>                any other flat input of n pixels, taken as it is (no image, no
                                downsampling: small RTL test networks such as 16-12-4)
           | 28x28 | 14x14      the same as a 1-channel map (needed before conv/pool layers)
    LAYER  = c<k>x<ch>          stride-1 'same' convolution, odd kernel k, ch output channels
           | p<k>               k x k min-time pooling, stride k (map size must be a multiple of k)
           | <n>                fully connected layer of n neurons (flattens a map, channel-major)
    CLASSES = <n>               the output layer (fully connected, n >= 2)

e.g. ``784-128-10``, ``28x28-c5x8-p2-c5x16-p2-10``, ``14x14-c3x8-p2-64-10``.
"""

import copy
from dataclasses import asdict, dataclass

import numpy as np

from . import stidi_fixed, stidi_float
from .desire_config import Bounds, ConfigError, declared_problems, setting, tuples_from_json
from .hashing import MASK32, mix32, xorshift32
from .trace import Trace

#: xorshift32 seed of the notes (any nonzero 32-bit value works).
DEFAULT_SEED = 0x2545F491
FORWARD_MODES = ("binary", "real")
ARITHS = ("fixed", "float")
ERROR_NORMS = ("max", "l2")

TOPOLOGY_SYNTAX = (
    "syntax: INPUT-LAYER-...-CLASSES with INPUT = 784 | 196 | <n> (flat) | 28x28 | 14x14, "
    "LAYER = c<k>x<channels> (stride-1 'same' conv, odd k) | p<k> (k x k min-time pooling, stride k) "
    "| <n> (fully connected), CLASSES = <n> >= 2; e.g. 784-128-10 or 28x28-c5x8-p2-c5x16-p2-10"
)

#: Named topologies used in the reports (FPGA-sized and larger CSNN are this project's choice: the
#: paper's conv architecture is unpublished).
CSNN_FPGA = "28x28-c5x8-p2-c5x16-p2-10"
CSNN_LARGE = "28x28-c5x16-p2-c5x32-p2-128-10"


# ------------------------------------------------------------------------------------------------
# Topology
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StidiTopology:
    text: str
    n_pixels: int                 # 784 or 196: what data.input_pixels is asked for; n: a flat n-pixel input
    input_shape: tuple            # (N,) flat or (1, H, W) map
    layers: tuple                 # ("conv", k, ch) | ("pool", k) | ("fc", n), in order

    @property
    def is_conv(self) -> bool:
        return any(layer[0] != "fc" for layer in self.layers)


def _bad(text: str, token: str, why: str) -> ValueError:
    return ValueError(f"topology {text!r}: bad token {token!r} ({why}); {TOPOLOGY_SYNTAX}")


def parse_stidi_topology(text: str) -> StidiTopology:
    """Parse the topology syntax of the module docstring; ValueError names the bad token."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"topology {text!r}: empty; {TOPOLOGY_SYNTAX}")
    tokens = text.strip().lower().split("-")
    head = tokens[0]
    if head.isdigit():
        if int(head) < 1:
            raise _bad(text, tokens[0], "a flat input needs at least one pixel")
        shape = (int(head),)
    elif head in ("28x28", "14x14"):
        side = int(head.split("x")[0])
        shape = (1, side, side)
    else:
        raise _bad(text, tokens[0], "the input must be 784, 196, a flat <n>, 28x28 or 14x14")
    n_pixels = int(np.prod(shape))         # 28x28: 784, 14x14: 196 (the downsampled image)
    if len(tokens) < 2:
        raise ValueError(f"topology {text!r}: needs at least an output layer; {TOPOLOGY_SYNTAX}")
    layers = []
    for token in tokens[1:]:
        if token.isdigit():
            n = int(token)
            if n < 1:
                raise _bad(text, token, "a layer needs at least one neuron")
            layers.append(("fc", n))
            shape = (n,)
            continue
        if len(shape) != 3:
            raise _bad(text, token, "conv and pooling layers need a map: use a 28x28/14x14 input and put them "
                                    "before the fully connected layers")
        if token.startswith("c") and "x" in token[1:]:
            k_text, _, ch_text = token[1:].partition("x")
            if not (k_text.isdigit() and ch_text.isdigit()) or int(k_text) % 2 == 0 or int(ch_text) < 1:
                raise _bad(text, token, "conv is c<k>x<channels> with an odd kernel k and channels >= 1")
            if int(k_text) > shape[1]:
                raise _bad(text, token, f"a {k_text}x{k_text} kernel is wider than the {shape[1]}x{shape[2]} map")
            layers.append(("conv", int(k_text), int(ch_text)))
            shape = (int(ch_text),) + shape[1:]
        elif token.startswith("p") and token[1:].isdigit():
            k = int(token[1:])
            if k < 2 or shape[1] % k or shape[2] % k:
                raise _bad(text, token, f"pooling needs k >= 2 dividing the {shape[1]}x{shape[2]} map")
            layers.append(("pool", k))
            shape = (shape[0], shape[1] // k, shape[2] // k)
        else:
            raise _bad(text, token, "not a layer")
    if layers[-1][0] != "fc" or layers[-1][1] < 2:
        raise _bad(text, tokens[-1], "the last layer must be a fully connected output of >= 2 classes")
    return StidiTopology(text.strip().lower(), n_pixels, _input_shape(head), tuple(layers))


def _input_shape(head: str) -> tuple:
    if "x" in head:
        side = int(head.split("x")[0])
        return (1, side, side)
    return (int(head),)


@dataclass(eq=False)
class Stage:
    """One stage of the network (stage 0 is the input) with its host-side tables."""
    kind: str                     # "input" | "fc" | "conv" | "pool"
    shape: tuple                  # output shape: (N,) or (C, H, W)
    k: int = 0
    weight_shape: tuple = ()      # canonical latent weight shape: (N_out, N_in) or (Cout, Cin, k, k)
    fan_in: int = 0               # rows of the internal (fan_in, fan_out) weight layout
    padded_size: int = 0          # conv: size of the zero-padded input map
    interior: np.ndarray = None   # conv: padded-map index of each input (Cin*H*W,)
    patches: np.ndarray = None    # conv: (P, K) padded-map index per output position and tap
    step_bits: int = 0            # conv: T < 2**step_bits (T <= 1024) (event sort key = position << step_bits | step)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def build_stages(topology: StidiTopology) -> list:
    stages = [Stage("input", topology.input_shape)]
    shape = topology.input_shape
    for layer in topology.layers:
        if layer[0] == "fc":
            n_in = int(np.prod(shape))
            stages.append(Stage("fc", (layer[1],), weight_shape=(layer[1], n_in), fan_in=n_in))
            shape = (layer[1],)
        elif layer[0] == "pool":
            k = layer[1]
            shape = (shape[0], shape[1] // k, shape[2] // k)
            stages.append(Stage("pool", shape, k=k))
        else:
            _, k, cout = layer
            cin, h, w = shape
            pad = k // 2
            hp, wp = h + 2 * pad, w + 2 * pad
            ci, y, x = np.meshgrid(np.arange(cin), np.arange(h), np.arange(w), indexing="ij")
            interior = ((ci * hp + y + pad) * wp + x + pad).reshape(-1)
            tci, ky, kx = np.meshgrid(np.arange(cin), np.arange(k), np.arange(k), indexing="ij")
            tap = ((tci * hp + ky) * wp + kx).reshape(-1)                      # (K,)
            oy, ox = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            origin = (oy * wp + ox).reshape(-1)                                # (P,)
            patches = (origin[:, None] + tap[None, :]).astype(np.int64)
            shape = (cout, h, w)
            stages.append(Stage("conv", shape, k=k, weight_shape=(cout, cin, k, k), fan_in=cin * k * k,
                                padded_size=cin * hp * wp, interior=interior.astype(np.int64), patches=patches,
                                step_bits=11))
    return stages


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StidiConfig:
    """Everything that defines a STiDi-BP learner (both arithmetics). Per-layer tuples are indexed by
    weight layer (the order of the weight stages); None = the documented default."""

    topology: str = "784-128-10"
    arith: str = setting("fixed", choices=ARITHS)
    forward: str = setting("binary", choices=FORWARD_MODES)   # forward weights: "binary" (sign) or "real"
    time_steps: int = setting(101, bounds=Bounds(3, 1024))    # T: steps 0..T-1, T = silent; encoding Tend = T-1
    # Theta per weight layer, in U units (sum of w*(t - t_i))
    thresholds: tuple[int, ...] | None = setting(None, bounds=Bounds(1), example=(1000, 150))
    add: int = setting(15, bounds=Bounds(0))                  # target offsets of the relative output targets
    neg: int = setting(15, bounds=Bounds(0))
    seed: int = setting(DEFAULT_SEED, bounds=Bounds(1, MASK32))   # xorshift32 init stream (nonzero); dropout key
    drop8: int = setting(0, bounds=Bounds(0, 255))   # hidden dropout (backward only): drop if hash byte < drop8
    # fixed point
    weight_bits: int = setting(16, bounds=Bounds(2, 32), arith="fixed")   # latent weights: signed, saturating
    # init W = x >> (32 - bits): uniform [0, 2**bits)
    init_bits: tuple[int, ...] | None = setting(None, bounds=Bounds(1), arith="fixed", example=(14, 12))
    init_signed: bool = setting(False, arith="fixed")         # subtract 2**(bits-1) from the init (zero-mean signs)
    levels: int = setting(6, bounds=Bounds(0, 8), arith="fixed")          # Q: hidden error levels 2**0 .. 2**Q
    # hidden error scale: "l2" (L2 norm = 2**Q) or "max" (largest = 2**Q)
    error_norm: str = setting("l2", choices=ERROR_NORMS, arith="fixed")
    # 0: ternary output error; >0: power-of-two output levels
    output_levels: int = setting(0, bounds=Bounds(0, 8), arith="fixed")
    # per-layer right shift of the update step (rounded); past 32 no step of a <= 32-bit weight survives
    lr_shift: tuple[int, ...] | None = setting(None, bounds=Bounds(0, 32), arith="fixed", example=(0, 0))
    # step schedule: every this many epochs the update step halves (integer: one more right shift;
    # float: lr / 2); 0 keeps the step fixed
    lr_halving_epochs: int = setting(0, bounds=Bounds(0))
    # forward="real" (fixed): forward weight = W >> fwd_shift
    fwd_shift: int = setting(10, bounds=Bounds(0, 31), arith="fixed")
    # float reference
    # threshold on V = sum w * eps(t - t_i), eps(s) = s / tau1
    theta: float = setting(100.0, bounds=Bounds(0.0, low_open=True), arith="float")
    tau1: float = setting(101.0, arith="float")               # ramp PSP slope 1/tau1 (must be >= T: pure ramp)
    lr: tuple[float, ...] | None = setting(None, bounds=Bounds(0.0), arith="float", example=(0.5, 0.5))
    # per-layer uniform init (lo, hi)
    init_range: tuple[tuple[float, float], ...] | None = setting(None, arith="float",
                                                                 example=((0.0, 1.0), (0.0, 10.0)))
    # binary: learning rate of the per-layer scale alpha (0 = fixed)
    scale_lr: float = setting(0.0, bounds=Bounds(0.0), arith="float")

    def __post_init__(self):
        problems = declared_problems(self)
        if problems:                     # the checks below compare values: they need the declared types
            raise ConfigError("STiDi-BP", problems)
        try:
            topo = parse_stidi_topology(self.topology)
        except ValueError as error:
            raise ConfigError("STiDi-BP", [(("topology",), str(error))]) from None
        n_weight = sum(1 for layer in topo.layers if layer[0] != "pool")
        for name in ("add", "neg"):
            if getattr(self, name) >= self.time_steps:
                problems.append(((name, "time_steps"),
                                 f"{name} {getattr(self, name)} outside 0..T-1 ({self.time_steps - 1})"))
        if self.arith == "float" and self.tau1 < self.time_steps:   # the integer model has no PSP slope
            problems.append((("tau1", "time_steps"),
                             f"tau1 {self.tau1} < T {self.time_steps}: only the pure ramp PSP is modelled"))
        for name in ("thresholds", "init_bits", "lr_shift", "lr", "init_range"):
            value = getattr(self, name)
            if value is not None and len(value) != n_weight:
                problems.append(((name, "topology"),
                                 f"{name} needs {n_weight} entries (one per weight layer), got {len(value)}"))
        if self.init_bits is not None and any(b > self.weight_bits - 1 for b in self.init_bits):
            problems.append((("init_bits", "weight_bits"), f"init_bits {self.init_bits} must be in 1..weight_bits-1"))
        if problems:
            raise ConfigError("STiDi-BP", problems)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> "StidiConfig":
        settings = {key: tuples_from_json(value) for key, value in settings.items() if key in cls.__dataclass_fields__}
        settings.setdefault("error_norm", "max")      # models saved before the L2 norm existed
        return cls(**settings)


def default_thresholds(stages: list, cfg: StidiConfig) -> tuple:
    """Theta per weight layer (U units): chosen so the median initial spike of an all-positive init
    is early in the window (notes 10.6), scaled by the mean forward weight for forward='real'."""
    out = []
    for l, stage in enumerate(stages[1:], 1):
        if stage.kind == "pool":
            continue
        pre = stages[l - 1]
        if pre.kind == "input":
            # a flat input of another size (no image) takes the rule of an fc layer after fc(n)
            theta = {784: 1000, 196: 300}.get(pre.size, round(1.17 * pre.size))
            if stage.kind == "conv":
                theta = 160 if stage.k == 5 else 60
        elif stage.kind == "conv":
            theta = 6 * pre.shape[0] * stage.k * stage.k
        elif pre.kind in ("pool", "conv"):
            theta = pre.size
        else:
            theta = round(1.17 * pre.size)
        if cfg.forward == "real":
            bits = weight_layer_value(cfg.init_bits or default_init_bits(stages, cfg), stages, l)
            theta = theta << max(0, bits - 1 - cfg.fwd_shift)
        out.append(max(1, int(theta)))
    return tuple(out)


def weight_layers(stages: list) -> list:
    return [l for l, stage in enumerate(stages) if stage.kind in ("fc", "conv")]


def weight_layer_value(values: tuple, stages: list, l: int):
    return values[weight_layers(stages).index(l)]


def default_init_bits(stages: list, cfg: StidiConfig) -> tuple:
    """WBITS-2 for the first weight layer, WBITS-3 for hidden layers after it, WBITS-4 for the
    output layer (784-128-10: 14, 12; the notes used 14, 13 with the max-scaled error). An fc layer
    reading a conv/pool map has many early-firing inputs and needs faster sign flips: WBITS-4 if it
    is hidden, WBITS-5 if it is the output; fc layers above it get WBITS-5."""
    out, after_map = [], False
    layers = weight_layers(stages)
    for i, l in enumerate(layers):
        if i == 0:
            out.append(cfg.weight_bits - 2)
        elif stages[l].kind == "fc" and stages[l - 1].kind in ("pool", "conv"):
            out.append(cfg.weight_bits - (5 if l == layers[-1] else 4))
            after_map = True
        elif stages[l].kind == "fc" and after_map:
            out.append(cfg.weight_bits - 5)
        elif l == layers[-1]:
            out.append(cfg.weight_bits - 4)
        else:
            out.append(cfg.weight_bits - 3)
    return tuple(max(1, b) for b in out)


def default_lr_shift(stages: list, cfg: StidiConfig) -> tuple:
    """0 at 16-bit weights; conv layers sum many positions per weight, so they shift by 4 more."""
    base = max(0, 16 - cfg.weight_bits)
    top = weight_layers(stages)[-1]
    return tuple(base + (4 if stages[l].kind == "conv" else 0) + (cfg.output_levels if l == top else 0)
                 for l in weight_layers(stages))


def default_lr(stages: list) -> tuple:
    """0.5 per fc layer (the repo's). Conv nets: rates that give the float reference the integer
    model's step-to-init ratios (first conv 0.025, later conv 0.5, an fc reading a map 0.125); in
    5,000-sample CSNN-FPGA runs they reached 74 % where 0.05 / 0.2 per conv layer reached 56-63 %."""
    out = []
    for i, l in enumerate(weight_layers(stages)):
        if stages[l].kind == "conv":
            out.append(0.025 if i == 0 else 0.5)
        elif stages[l - 1].kind in ("pool", "conv"):
            out.append(0.125)
        else:
            out.append(0.5)
    return tuple(out)


def default_init_range(stages: list, forward: str) -> tuple:
    """Real forward: the repo's U[0,10) / U[10,50). Binary forward: ranges that start at 0, so signs
    can flip within a few updates (BS4NN uses U[0,5) / U[0,48) with lr 0.1)."""
    first, rest = ((0.0, 10.0), (10.0, 50.0)) if forward == "real" else ((0.0, 1.0), (0.0, 10.0))
    out = []
    for i, l in enumerate(weight_layers(stages)):
        if i == 0:
            out.append(first)
        elif forward == "binary" and stages[l].kind == "fc" and stages[l - 1].kind in ("pool", "conv"):
            out.append((0.0, 2.5))           # like the integer WBITS-5 init: faster flips after a map
        else:
            out.append(rest)
    return tuple(out)


def encoding_table(time_steps: int) -> np.ndarray:
    """The 256-entry latency ROM: t = Tend - ceil(Tend * p / 255), Tend = T - 1 (p=255 -> 0, p=0 -> Tend)."""
    t_end = time_steps - 1
    p = np.arange(256, dtype=np.int64)
    return t_end - (t_end * p + 254) // 255


# ------------------------------------------------------------------------------------------------
# Randomness (xorshift32 stream for init; mix32 hash for dropout)
# ------------------------------------------------------------------------------------------------

def xorshift_stream(state: int, n: int):
    """The next n xorshift32 outputs (uint32 array) and the new state."""
    out = np.empty(n, dtype=np.uint32)
    x = state
    for i in range(n):
        x = xorshift32(x)
        out[i] = x
    return out, x


def below(state: int, n: int):
    """Uniform draw in 0..n-1 by rejection: r = x & (2**ceil(log2 n) - 1) until r < n. (value, state)."""
    mask = (1 << max(0, (n - 1).bit_length())) - 1
    while True:
        state = xorshift32(state)
        r = state & mask
        if r < n:
            return r, state


def fisher_yates(n: int, state: int):
    """Fisher-Yates permutation of range(n) driven by xorshift32 (notes 10.4): (perm, new state).
    The trainer does its own shuffling; this is the hardware-friendly order for an on-chip trainer."""
    perm = np.arange(n, dtype=np.int64)
    for i in range(n - 1, 0, -1):
        j, state = below(state, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm, state


def init_weights(cfg: StidiConfig, stages: list):
    """Initial latent weights (canonical shapes), drawn row-major layer by layer from one xorshift32
    stream seeded with cfg.seed; returns (list by stage index, final RNG state)."""
    state = cfg.seed
    bits = cfg.init_bits or default_init_bits(stages, cfg)
    ranges = cfg.init_range or default_init_range(stages, cfg.forward)
    weights = [None] * len(stages)
    for i, l in enumerate(weight_layers(stages)):
        shape = stages[l].weight_shape
        draws, state = xorshift_stream(state, int(np.prod(shape)))
        draws = draws.astype(np.int64)
        if cfg.arith == "fixed":
            w = draws >> (32 - bits[i])
            if cfg.init_signed:
                w = w - (1 << (bits[i] - 1))
        else:
            lo, hi = ranges[i]
            w = lo + (hi - lo) * (draws.astype(np.float64) / 2.0 ** 32)
        weights[l] = w.reshape(shape)
    return weights, state


# ------------------------------------------------------------------------------------------------
# Learners
# ------------------------------------------------------------------------------------------------

class _StidiLearner:
    rule = "stidi"

    def __init__(self, cfg: StidiConfig, weights: dict | None = None):
        self.cfg = cfg
        self.arith = cfg.arith
        self.topo = parse_stidi_topology(cfg.topology)
        self.stages = build_stages(self.topo)
        self.T = cfg.time_steps
        self.add, self.neg = cfg.add, cfg.neg
        self.forward = cfg.forward
        self.fwd_shift = cfg.fwd_shift
        self.levels = cfg.levels
        self.error_norm = cfg.error_norm
        self.output_levels = cfg.output_levels
        self.weight_bits = cfg.weight_bits
        self.layers = weight_layers(self.stages)
        self.table = encoding_table(self.T)
        per_layer = lambda values: {l: values[i] for i, l in enumerate(self.layers)}  # noqa: E731
        self._theta_u = per_layer(cfg.thresholds or default_thresholds(self.stages, cfg))
        self.lr_shift = per_layer(cfg.lr_shift or default_lr_shift(self.stages, cfg))
        self.lr = per_layer(cfg.lr or default_lr(self.stages))
        self.halvings = 0        # of the update step so far (the schedule's position: set_epoch)
        if weights is None:
            canonical, _ = init_weights(cfg, self.stages)
        else:
            canonical = [None] * len(self.stages)
            for l in self.layers:
                canonical[l] = np.asarray(weights[f"w{l}"])
        dtype = np.int64 if cfg.arith == "fixed" else np.float64
        # internal layout (fan_in, fan_out): an input spike selects a row
        self.w = [None if c is None else np.ascontiguousarray(c.reshape(c.shape[0], -1).T, dtype=dtype)
                  for c in canonical]
        self._init_arith(weights)

    # --- shared ---
    def set_epoch(self, epoch: int) -> None:
        """Put the step schedule at ``epoch`` (0-based): ``epoch // lr_halving_epochs`` halvings (§9.1)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, not {epoch}")
        k = self.cfg.lr_halving_epochs
        self.halvings = epoch // k if k else 0

    def step_shift(self, layer: int) -> int:
        """The integer update's right shift of weight layer ``layer`` at the schedule's position."""
        return self.lr_shift[layer] + self.halvings

    def step_lr(self, layer: int) -> float:
        """The float reference's learning rate of weight layer ``layer`` at the schedule's position."""
        return self.lr[layer] / (1 << self.halvings)

    def keep_mask(self, step: int, stage: int, shape) -> np.ndarray:
        """Hidden dropout (backward only): keep unless mix32(mix32(seed ^ step) ^ stage << 16 ^ index) >> 24 < drop8."""
        if self.cfg.drop8 == 0 or stage == 0:
            return np.ones(shape, dtype=bool)
        key = mix32(np.uint32((self.cfg.seed ^ step) & MASK32)) ^ np.uint32(stage << 16)
        n = int(np.prod(shape))
        return ((mix32(key ^ np.arange(n, dtype=np.uint32)) >> np.uint32(24)) >= self.cfg.drop8).reshape(shape)

    @property
    def image_input(self) -> bool:
        """The input is a 28x28 image (784 / 28x28) or its downsampling (196 / 14x14), not a flat <n>."""
        return self.topo.n_pixels in (784, 196)

    def encode(self, images) -> np.ndarray:
        """uint8 (N, 28, 28) -> input spike times (N,) + input shape. A flat <n> input takes (N, n)
        pixels as they are."""
        images = np.asarray(images)
        if self.topo.n_pixels == 784:
            pixels = images.reshape(len(images), -1)
        elif self.topo.n_pixels == 196:
            from .data import input_pixels
            pixels = input_pixels(images, 196)
        else:
            pixels = images.reshape(len(images), -1)
            if pixels.shape[1] != self.topo.n_pixels:
                raise ValueError(f"topology {self.topo.text!r} takes {self.topo.n_pixels} pixels per sample, "
                                 f"not {pixels.shape[1]}")
        return self.table[pixels.astype(np.int64)].reshape((len(images),) + self.topo.input_shape)

    def train_samples(self, images, labels, first_step: int, epoch: int) -> np.ndarray:
        self.set_epoch(epoch)
        times = self.encode(images)
        labels = np.asarray(labels, dtype=np.int64)
        correct = np.empty(len(times), dtype=bool)
        for k in range(len(times)):
            correct[k] = self._train_one(times[k], int(labels[k]), first_step + k) == labels[k]
        return correct

    def predict(self, images) -> np.ndarray:
        times = self.encode(images)
        return np.array([self._predict_one(t) for t in times], dtype=np.int64)

    def settings(self) -> dict:
        return dict(self.cfg.to_dict(), rule="stidi")

    def weight_arrays(self) -> dict:
        arrays = {}
        for l in self.layers:
            arrays[f"w{l}"] = self.w[l].T.reshape(self.stages[l].weight_shape).copy()
        arrays.update(self._extra_arrays())
        return arrays

    @property
    def thresholds(self) -> dict:
        return self._thresholds()


class FixedStidiLearner(_StidiLearner):
    """The multiplication-free integer golden model."""

    def _init_arith(self, weights):
        self.w_fwd = [None if w is None else stidi_fixed.forward_weights(w, self.forward, self.fwd_shift)
                      for w in self.w]

    def _thresholds(self):
        return self._theta_u

    def _extra_arrays(self):
        return {}

    def _train_one(self, t0, label, step, trace=None):
        return stidi_fixed.train_step(self, t0, label, step, trace)

    def _predict_one(self, t0):
        return stidi_fixed.predict_one(self, t0)


class FloatStidiLearner(_StidiLearner):
    """The float reference (L2-normalized errors; real or binarized forward)."""

    def _init_arith(self, weights):
        self.tau1 = float(self.cfg.tau1)
        self.theta = float(self.cfg.theta)
        self.scale_lr = float(self.cfg.scale_lr)
        if weights is not None and self.forward == "binary":
            self.alpha = {l: float(weights[f"alpha{l}"]) for l in self.layers}
        else:   # alpha with theta * tau1 / alpha == Theta: the float forward equals the integer one at init
            self.alpha = {l: self.theta * self.tau1 / self._theta_u[l] for l in self.layers}
        self.w_fwd = [None if w is None else stidi_float.forward_weights(w, self.forward) for w in self.w]

    def _thresholds(self):
        if self.forward == "binary":
            return {l: self.theta * self.tau1 / self.alpha[l] for l in self.layers}
        return {l: self.theta * self.tau1 for l in self.layers}

    def _extra_arrays(self):
        if self.forward == "binary":
            return {f"alpha{l}": np.array(self.alpha[l]) for l in self.layers}
        return {}

    def _train_one(self, t0, label, step, trace=None):
        return stidi_float.train_step(self, t0, label, step, trace)

    def _predict_one(self, t0):
        return stidi_fixed.predict_one(self, t0)


# ------------------------------------------------------------------------------------------------
# The integration contract with the trainer and the CLI
# ------------------------------------------------------------------------------------------------

def make_stidi_learner(arith: str, topology: str, seed: int, weight_bits: int | None = None, **options):
    """A fresh STiDi-BP learner. ``options`` are :class:`StidiConfig` fields (e.g. ``forward="real"``,
    ``thresholds=(1000, 150)``, ``drop8=37``). ``weight_bits`` only applies to arith='fixed'."""
    if arith not in ARITHS:
        raise ValueError(f"arith {arith!r} not in {ARITHS}")
    parse_stidi_topology(topology)
    unknown = set(options) - set(StidiConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown STiDi-BP options {sorted(unknown)}; known: {sorted(StidiConfig.__dataclass_fields__)}")
    settings = dict(options, topology=topology, arith=arith, seed=seed if seed else DEFAULT_SEED)
    if weight_bits is not None and arith == "fixed":
        settings["weight_bits"] = weight_bits
    for key in ("thresholds", "init_bits", "lr_shift", "lr", "init_range"):
        if settings.get(key) is not None:
            settings[key] = tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in settings[key])
    cfg = StidiConfig(**settings)
    return FixedStidiLearner(cfg) if arith == "fixed" else FloatStidiLearner(cfg)


def stidi_learner_from_saved(settings: dict, arrays: dict):
    """Rebuild a learner from ``learner.settings()`` and ``learner.weight_arrays()`` (bit-identical)."""
    cfg = StidiConfig.from_dict(settings)
    cls = FixedStidiLearner if cfg.arith == "fixed" else FloatStidiLearner
    return cls(cfg, weights=arrays)


def record_stidi_trace(learner, image, label: int, step: int, epoch: int) -> Trace:
    """Every intermediate of training ``learner`` on one sample (a 28x28 image, or the n pixels of a
    flat <n> input) at global step ``step`` in epoch ``epoch`` (the step schedule's position, as
    ``train_samples`` sets it), in execution order (keys in docs/golden-spec-stidi.md). The learner
    itself is left unchanged (a copy is trained)."""
    twin = copy.deepcopy(learner)
    twin.set_epoch(int(epoch))
    image = np.asarray(image).reshape((1, 28, 28) if twin.image_input else (1, -1))
    trace = Trace()
    trace.record("encode", 0, "pixels", image[0])
    t0 = twin.encode(image)[0]
    twin._train_one(t0, int(label), int(step), trace)
    return trace


__all__ = [
    "CSNN_FPGA", "CSNN_LARGE", "DEFAULT_SEED", "FixedStidiLearner", "FloatStidiLearner", "Stage", "StidiConfig",
    "StidiTopology", "build_stages", "encoding_table", "fisher_yates", "init_weights", "make_stidi_learner",
    "parse_stidi_topology", "record_stidi_trace", "stidi_learner_from_saved", "xorshift_stream",
]
