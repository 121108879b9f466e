"""Benchmark (not a test): cycles per sample of the binarized STiDi-BP core (rtl/stidi_core.py),
measured on the RTL under Amaranth's simulator, every run checked bit for bit against the integer
golden model (sim/stidi_check.py), next to an analytic bound of the same samples (``cycle_bound``);
cycles per phase, read from the core's controller state; the memory bits the core instantiates;
and (``--yosys``) the Yosys ``proc; flatten; opt; stat`` cell counts of 196-64-10 (no multiplier).

Three kinds of sample: training samples whose golden output error is nonzero ("error": the backward
runs), training samples whose output error is zero ("correct": §8 case 2, the backward is skipped
as the golden model skips it), and inference samples. 196/784-input networks take built-in MNIST
images (training images for training, test images for inference), flat inputs such as 16-12-4
synthetic pixels (30 % zeros) labelled by the pixel group with the largest sum. The golden model
trains on the first ``--pretrain`` samples of the stream (trained weights: realistic spike counts,
and correct samples occur), then keeps training on the stream; the first samples of each kind still
wanted are picked, and each picked training sample is one RTL run from the latent weights it met in
that golden run (loaded through the weight port), so the core sees the weights of a real training
run. The inference samples run together on the weights at the end of the stream.

Writes results/rtl/stidi_cycles.json. Usage (nice it: the machine is shared):
  nice python bench/stidi_cycles.py [--quick] [--error 4 --correct 4 --infer 2] [--yosys]
  python bench/stidi_cycles.py --table           # the markdown table of --out
"""

import argparse
import copy
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import amaranth  # noqa: E402
import numpy as np  # noqa: E402
from amaranth.hdl import Fragment, Shape  # noqa: E402
from amaranth.lib.memory import Memory  # noqa: E402

from mfsnn.golden.data import load_dataset  # noqa: E402
from mfsnn.golden.progress import Progress  # noqa: E402
from mfsnn.golden.stidi_fixed import early_exit_steps  # noqa: E402
from mfsnn.golden.stidi import StidiConfig  # noqa: E402
from mfsnn.rtl import synth_check  # noqa: E402
from mfsnn.rtl.stidi_core import StidiCore, StidiCoreParams  # noqa: E402
from mfsnn.rtl.stidi_update import SORTED_ABOVE_BLOCKS  # noqa: E402
from mfsnn.sim import stidi_check  # noqa: E402
from mfsnn.sim.amaranth_tb import check_run  # noqa: E402
from mfsnn.sim.stidi_check import Sample, expected_sample, golden_learner, learner_weights, start_check  # noqa: E402

KINDS = ("error", "correct", "inference")

#: State name prefix (of the phase components' FSMs, or the sequencer's) -> phase (the phases of the
#: rtl/stidi_core.py docstring).
PHASE_OF_STATE = (("FW_", "forward"), ("DEC_", "decision"), ("TGT", "targets"), ("BW_", "backward"),
                  ("Q_", "quantise"), ("OUT", "result"))
PHASES = ("forward", "decision", "targets", "backward", "quantise", "result")

BOUND_DEFINITION = (
    "Lower bound on the cycles of one sample for a P-lane core that keeps the golden model's order of "
    "operations and this core's memory layout (P post neurons per word: block b of layer l = posts "
    "b*P .. b*P+P-1, one word per (block, pre)), doing one P-lane operation per cycle and one phase at a "
    "time; B(l) = ceil(N_l / P). "
    "forward = sum over layers l of [B(l-1) + B(l) * (S(l-1) + T)]: read the N_{l-1} spike times once (P per "
    "word), then per block of P posts one sign word per pre spike that can change a membrane (t_i < T-1, the "
    "golden C[s] sums, spec 5; S(l-1) of them) and one integration step (U += I, compare with Theta) per "
    "time step; an inference exits early (spec 7): block b of the top layer walks only steps 0..stop_b "
    "(golden early_exit_steps), so its part is the pres spiking at or before stop_b plus stop_b + 1 steps. "
    "decision = B(L) (one pass over the output times and membranes, spec 7). targets = B(L) "
    "(training samples: the targets and ternary error need the decision's min, max and winner first, spec 8). "
    "backward = sum over the layers the golden backward updates of sum over eligible pres j (fired, kept, "
    "and t_j < T-1 in layer 1, as golden fc_backward) of the number of post blocks holding a post k with "
    "s_k != 0 and t_j <= t_k: the weight words that the update (spec 9.2) and the displacement with the "
    "new weights (9.3) must read and write, one word per cycle. quantise = passes * B(m) for every hidden "
    "stage m whose displacement is quantised (spec 9.6: the largest leading one, then for error_norm=l2 "
    "the norm sum, then the levels: 3 passes, each needing the one before; 2 for max). Inference: forward "
    "+ decision; correct samples: + targets; error samples: + backward + quantise. The result beat and "
    "pipeline fill/drain are not counted. Spike counts and errors come from the golden trace of the same "
    "sample (cycle_bound in bench/stidi_cycles.py). ratio = measured cycles / bound, as sum over the "
    "samples of a kind (per-sample ratios in 'samples').")


# ------------------------------------------------------------------------------------------------
# The analytic bound
# ------------------------------------------------------------------------------------------------

def ceil_div(a, b):
    return -(-a // b)


def cycle_bound(sizes, T, P, times, errors=None, keep=None, norm_passes=3):
    """Lower bound on the cycles of one sample, per phase (``BOUND_DEFINITION`` in words).

    ``sizes`` = (N_0, ..., N_L); ``times[x]`` = spike times of stage x = 0..L (T = silent), from the
    golden trace; ``errors`` = None for an inference sample, else {l: error sign of layer l's posts}
    for every weight layer whose update the golden backward ran (empty: a training sample with zero
    output error); ``keep[m]`` = dropout keep bits of hidden stage m (None: all kept); ``norm_passes``
    = passes over a hidden stage to quantise its displacement (3 for ``error_norm="l2"``, 2 for
    ``"max"``). Returns {phase: cycles} for ``PHASES``, "total", and "terms": the per-layer parts
    (``forward_read_l`` = B(l-1), ``forward_walk_l`` = B(l) * (S(l-1) + T), in an inference the top layer's
    only through each block's early-exit step, ``backward_words_l``).
    A pure function of its arguments.
    """
    L = len(sizes) - 1
    times = [np.asarray(t, dtype=np.int64).reshape(-1) for t in times]
    if len(times) != L + 1 or any(len(t) != n for t, n in zip(times, sizes)):
        raise ValueError(f"times must hold one array per stage of {sizes}")
    blocks = [ceil_div(n, P) for n in sizes]
    bound, terms = dict.fromkeys(PHASES, 0), {}
    for l in range(1, L + 1):
        listed = times[l - 1][times[l - 1] < T - 1]               # the pres in a step's spike list
        if l == L and errors is None:                              # an inference exits early (spec 7)
            stops = early_exit_steps(times[L], T, P)[::P].tolist()
            walk = sum(int(np.count_nonzero(listed <= stop)) + stop + 1 for stop in stops)
            # not in the bound: the core's extra cycle after a block stops on its own spike before the
            # horizon (the integration's cycle does not also decide the exit)
            terms["early_exit_pending"] = sum(stop < horizon for stop, horizon in zip(stops, [T - 1] + stops))
        else:
            walk = blocks[l] * (listed.size + T)
        terms[f"forward_read_{l}"], terms[f"forward_walk_{l}"] = blocks[l - 1], walk
        bound["forward"] += blocks[l - 1] + walk
    bound["decision"] = blocks[L]
    if errors is not None:
        bound["targets"] = blocks[L]
        for l, sign in errors.items():
            sign = np.asarray(sign).reshape(-1)
            t_pre, t_post = times[l - 1], times[l]
            eligible = t_pre < (T - 1 if l == 1 else T)
            if keep is not None and l >= 2 and (l - 1) in keep:
                eligible &= np.asarray(keep[l - 1], dtype=bool).reshape(-1)
            padded = np.full(blocks[l] * P, -1, dtype=np.int64)      # latest error post per block
            padded[:sizes[l]] = np.where(sign != 0, t_post, -1)
            latest = padded.reshape(blocks[l], P).max(axis=1)
            terms[f"backward_words_{l}"] = int((t_pre[eligible][:, None] <= latest[None, :]).sum())
            bound["backward"] += terms[f"backward_words_{l}"]
            if l >= 2:
                bound["quantise"] += norm_passes * blocks[l - 1]
    bound["total"] = sum(bound[phase] for phase in PHASES)
    bound["terms"] = terms
    return bound


def excess_by_cause(states, bound, L):
    """Where a sample's cycles above its bound go, from the controller states it spent them in
    (``states``: {state: cycles} while busy, the result beat OUT excluded as in the cycles field).
    The causes add up to cycles - bound."""
    def n(*names):
        return sum(states.get(name, 0) for name in names)

    def prefixed(*prefixes):
        return sum(c for name, c in states.items() if name.startswith(prefixes))

    terms, layers = bound["terms"], range(1, L + 1)
    bw_latest = sum(n(f"BW_LATEST_{l}") for l in layers)
    bw_words = sum(n(f"BW_WORD_{l}", f"BW_MASK_{l}") for l in layers)
    bw_block = sum(n(f"BW_BLOCK_{l}") for l in layers)
    bw_sort = sum(n(f"BW_SORT_{l}", f"BW_PLACE_{l}") for l in layers)
    return {
        "FW_LIST/FW_LINK: 1 per spiking pre or per word without one, list start and drain (bound: B(l-1) words)":
            sum(n(f"FW_LIST_{l}", f"FW_LINK_{l}", f"FW_LIST_DRAIN_{l}") - terms[f"forward_read_{l}"] for l in layers),
        "FW_WALK beyond B(l) * (S + T)": sum(n(f"FW_WALK_{l}") - terms[f"forward_walk_{l}"] for l in layers)
        - terms.get("early_exit_pending", 0),
        "FW_WALK: 1 per output block that stops on its own spike before the horizon (early exit)":
            terms.get("early_exit_pending", 0),
        "FW_BLOCK_END: 1 per block": sum(n(f"FW_BLOCK_END_{l}") for l in layers),
        "DEC/TGT: one output neuron per cycle, drains": prefixed("DEC_", "TGT") - bound["decision"] - bound["targets"],
        "BW_LATEST: 1 per post block (each block's latest error post)": bw_latest,
        "BW_WORD/BW_MASK: 1 per pre word, eligible pres or not": bw_words,
        "BW_BLOCK beyond the bound's words (blocks with an error post at or after t_j)": bw_block - bound["backward"],
        f"BW_SORT/BW_PLACE: the blocks sorted by latest (more than {SORTED_ABOVE_BLOCKS} blocks: prefix pass over "
        "the latest values, 1 per post block)": bw_sort,
        "BW_KEY/BW_PREP/BW_DRAIN": prefixed("BW_") - bw_latest - bw_words - bw_block - bw_sort,
        "Q_*: drains": prefixed("Q_") - bound["quantise"],
    }


def golden_bound(params, expected, keep=None):
    """``cycle_bound`` of one sample from its golden ``Expected`` (sim/stidi_check.expected_sample)."""
    trace, L = expected.trace, params.L
    times = [trace["encode/0/times"]] + [trace[f"forward/{l}/times"] for l in range(1, L + 1)]
    errors = None
    if f"target/{L}/d" in trace:
        errors = {}
        for l in range(L, 0, -1):
            if f"update/{l}/w" in trace:
                errors[l] = trace[f"target/{L}/d"] if l == L else trace[f"error/{l}/sign"]
    passes = 3 if params.cfg.error_norm == "l2" else 2
    return cycle_bound(params.sizes, params.T, params.P, times, errors, keep, passes)


# ------------------------------------------------------------------------------------------------
# Samples
# ------------------------------------------------------------------------------------------------

def sample_stream(params, n, seed, split="train"):
    """(pixels as the core takes them, raw images for the golden learner, labels): built-in MNIST for
    196/784 inputs, else synthetic pixels (30 % zeros) labelled by the largest of N_L pixel groups."""
    n_in, n_out = params.sizes[0], params.sizes[-1]
    if n_in in (196, 784):
        from mfsnn.golden.data import input_pixels
        data = getattr(load_dataset("builtin"), split)
        images, labels = data.images[:n], np.asarray(data.labels[:n], dtype=np.int64)
        return input_pixels(images, n_in), images, labels
    rng = np.random.default_rng(seed + (0 if split == "train" else 1000))
    pixels = rng.integers(0, 256, (n, n_in)).astype(np.uint8)
    pixels[rng.random(pixels.shape) < 0.3] = 0
    groups = np.array_split(np.arange(n_in), n_out)
    labels = np.stack([pixels[:, g].astype(np.int64).sum(axis=1) for g in groups], axis=1).argmax(axis=1)
    return pixels, pixels, labels


def is_error(params, expected):
    return bool(np.any(expected.trace[f"target/{params.L}/d"] != 0))


def pick_samples(params, learner, pixels, labels, first, wanted, limit):
    """Follow a golden training run over the stream from position ``first`` (the learner trains on
    every sample, in place) and pick the samples of a kind still wanted ({"error": n, "correct": n}),
    each with the latent weights it met. Stops when every kind is complete or after ``limit`` samples.
    Returns [{"kind", "sample", "expected", "keep", "weights", "stream_index"}] and the samples looked at."""
    need, picked, q = dict(wanted), [], first
    while any(need.values()) and q < min(first + limit, len(labels)):
        sample = Sample(pixels[q], int(labels[q]), True, q, 0)
        weights = learner_weights(learner)
        keep = {m: learner.keep_mask(q, m, (params.sizes[m],)) for m in range(1, params.L)}
        expected = expected_sample(learner, sample, params.P)
        kind = "error" if is_error(params, expected) else "correct"
        if need[kind]:
            need[kind] -= 1
            picked.append({"kind": kind, "sample": sample, "expected": expected, "keep": keep, "weights": weights,
                           "stream_index": q})
        q += 1
    return picked, q - first


# ------------------------------------------------------------------------------------------------
# The RTL run, with the controller state observed
# ------------------------------------------------------------------------------------------------

def _generated_fsm(module, name):
    fsm = getattr(module, "_generated", {}).get(name)      # Amaranth 0.5 keeps a module's FSMs here
    if fsm is None:
        raise RuntimeError(f"cannot find the FSM {name!r} in amaranth {amaranth.__version__}")
    return fsm


class PhaseObservedCore(StidiCore):
    """``StidiCore`` that keeps the FSMs (``state`` and ``decoding``) of its sequencer (``ctrl``) and of
    every phase (``phase_fsms``) for the probe, so the cycles of every state can be counted; the
    hardware is unchanged."""

    def _phases(self):
        phases = super()._phases()
        self.phase_fsms = []
        for phase in phases.values():
            def elaborate(platform, inner=phase.elaborate):
                m = inner(platform)
                self.phase_fsms.append(_generated_fsm(m, "fsm"))
                return m
            phase.elaborate = elaborate
        return phases

    def elaborate(self, platform):
        m = super().elaborate(platform)
        self.ctrl = _generated_fsm(m, "ctrl")
        return m

    def state_name(self, ctrl_state, phase_states):
        """The state of this cycle: that of the phase that runs (the one not idle), else the sequencer's."""
        for fsm, state in zip(self.phase_fsms, phase_states):
            name = fsm.decoding[state]
            if name not in ("START", "IDLE"):
                return name
        return self.ctrl.decoding[ctrl_state]


def phase_of(state):
    for prefix, phase in PHASE_OF_STATE:
        if state.startswith(prefix):
            return phase
    return "other"


def run_rtl(params, weights, samples, bar):
    """Simulate ``samples`` through the project's ``rtl_run`` on a ``PhaseObservedCore`` and check them
    with the golden model. Returns (report, results, per-sample {state: cycles} while busy)."""
    per_sample, got = [], {}

    def probe(dut):
        async def count_states(ctx):
            current = None
            phase_states = [fsm.state for fsm in dut.phase_fsms]
            async for _, _, state, busy, *states in ctx.tick().sample(dut.ctrl.state, dut.busy, *phase_states):
                if busy:
                    if current is None:
                        current = {}
                        per_sample.append(current)
                    name = dut.state_name(state, states)
                    current[name] = current.get(name, 0) + 1
                elif current is not None:
                    current = None
                    bar.advance(1)
        return count_states

    def run():
        with mock.patch.object(stidi_check, "StidiCore", PhaseObservedCore):
            results, cycles, stray = stidi_check.rtl_run(params, weights, samples, probe=probe)
        got["results"] = results
        return results, cycles, stray

    checker = start_check(params, weights, len(samples))
    report = check_run(checker.report, samples, run, lambda sample, result, last: checker.check(sample, result, last))
    return report, got.get("results", []), per_sample


# ------------------------------------------------------------------------------------------------
# Memories and Yosys
# ------------------------------------------------------------------------------------------------

def memory_bits(params):
    """Every ``lib.memory.Memory`` that ``StidiCore(params)`` instantiates (found by elaborating it),
    as {path: [width, depth]}, and the bits of the latent weights (``weights/w<l>/mem*``), of the sign planes
    (``s<l>``) and of the rest, next to the unpadded N_l * N_{l-1} * WBITS and N_l * N_{l-1}."""
    found = {}

    def walk(fragment, path):
        for origin in getattr(fragment, "origins", None) or ():
            if isinstance(origin, Memory):
                found["/".join(path)] = [Shape.cast(origin.shape).width, origin.depth]
        for sub, name, _ in fragment.subfragments:
            walk(sub, path + [str(name)])

    walk(Fragment.get(StidiCore(params), None), [])
    # a layer's latent weights are one memory (``mem``) or, when deep, banks of one (``mem0``, ``mem1``, ...:
    # rtl/memories.py WordMemory)
    latent_names = {name for name in found if name.startswith("weights/w") and name.split("/")[-1].startswith("mem")}
    sign_names = {f"s{l}" for l in range(1, params.L + 1)}
    latent_layers = {name.split("/")[1] for name in latent_names}
    if latent_layers != {f"w{l}" for l in range(1, params.L + 1)} or not sign_names <= found.keys():
        raise RuntimeError(f"expected the memories weights/w<l>/mem* and s<l> for l = 1..{params.L}, "
                           f"found {sorted(found)}")
    bits = {name: w * d for name, (w, d) in found.items()}
    synapses = sum(params.sizes[l] * params.sizes[l - 1] for l in range(1, params.L + 1))
    return {"latent_weights": sum(bits[n] for n in latent_names), "sign_planes": sum(bits[n] for n in sign_names),
            "other": sum(b for n, b in bits.items() if n not in latent_names | sign_names),
            "total": sum(bits.values()), "latent_unpadded": synapses * params.cfg.weight_bits,
            "sign_unpadded": synapses, "memories": found}


def stidi_cell_stats(params, core_class=StidiCore):
    """Yosys ``proc; flatten; opt; stat`` cell counts of ``core_class(params)``, through the desire
    core's helper ``synth_check.cell_stats`` (which builds its design with ``synth_check.make_core``:
    pointed at the STiDi core for the call)."""
    def make_stidi(cfg, parallelism, debug):
        return core_class(StidiCoreParams(cfg, parallelism, debug))
    with mock.patch.object(synth_check, "make_core", make_stidi):
        return synth_check.cell_stats(params.cfg, params.P, params.debug)


# ------------------------------------------------------------------------------------------------
# One configuration
# ------------------------------------------------------------------------------------------------

def summarize(rows):
    if not rows:
        return None
    cycles = sum(r["cycles"] for r in rows)
    bound = sum(r["bound"]["total"] for r in rows)
    phases = {ph: round(float(np.mean([r["phases"].get(ph, 0) for r in rows])), 1) for ph in PHASES + ("other",)}
    bounds = {ph: round(float(np.mean([r["bound"][ph] for r in rows])), 1) for ph in PHASES}
    ratios = [r["ratio"] for r in rows]
    excess = {cause: round(float(np.mean([r["excess_by_cause"][cause] for r in rows])), 1)
              for cause in rows[0]["excess_by_cause"]}
    return {"n": len(rows), "cycles_mean": round(cycles / len(rows), 1), "bound_mean": round(bound / len(rows), 1),
            "ratio": round(cycles / bound, 3), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "phases_mean": phases, "bound_phases_mean": bounds,
            "phase_ratio": {ph: round(phases[ph] / bounds[ph], 2) if bounds[ph] else None for ph in PHASES},
            "excess_by_cause_mean": excess}


def measure(topology, P, args):
    """One configuration: golden training run and picks, then one RTL run per picked training sample
    (from the weights it met) and one for the inference samples (the weights after the stream)."""
    params = StidiCoreParams(StidiConfig(topology=topology), P, debug=False)
    flat_input = params.sizes[0] not in (196, 784)
    pretrain = args.pretrain if args.pretrain is not None else 300 if flat_input else 1000
    pixels, images, labels = sample_stream(params, pretrain + args.candidates, args.seed)
    learner = golden_learner(params)
    start = time.monotonic()
    if pretrain:
        learner.train_samples(images[:pretrain], labels[:pretrain], 0, 0)
    picked, looked_at = pick_samples(params, learner, pixels, labels, pretrain,
                                     {"error": args.error, "correct": args.correct}, args.candidates)
    weights_after = learner_weights(learner)
    test_pixels, _, test_labels = sample_stream(params, args.infer, args.seed, split="test")
    for q in range(args.infer):
        sample = Sample(test_pixels[q], int(test_labels[q]), False, 0, 0)
        picked.append({"kind": "inference", "sample": sample, "expected": expected_sample(learner, sample, params.P),
                       "keep": None, "weights": weights_after, "stream_index": q})
    golden_seconds = time.monotonic() - start
    jobs = [[pick] for pick in picked if pick["kind"] != "inference"]
    jobs += [[pick for pick in picked if pick["kind"] == "inference"]] if args.infer else []

    start = time.monotonic()
    sim_cycles, sim_seconds, rows = 0, 0.0, []
    compared = {}
    with Progress(len(picked), f"{topology} P={P}") as bar:
        for job in jobs:
            samples = [pick["sample"] for pick in job]
            report, results, per_state = run_rtl(params, job[0]["weights"], samples, bar)
            if not report.ok:
                raise RuntimeError(f"{topology} P={P}: the RTL does not match the golden model: {report.mismatch}")
            if len(per_state) != len(samples):
                raise RuntimeError(f"{topology} P={P}: the probe saw {len(per_state)} busy periods for "
                                   f"{len(samples)} samples")
            sim_cycles, sim_seconds = sim_cycles + report.sim_cycles, sim_seconds + report.sim_seconds
            for kind, n in report.compared.items():
                compared[kind] = compared.get(kind, 0) + n
            for pick, result, states in zip(job, results, per_state):
                # the result's cycles field counts the busy cycles before the result beat (state OUT)
                if result.cycles + states.get("OUT", 0) != sum(states.values()):
                    raise RuntimeError(f"{topology} P={P}: the probe counted {sum(states.values())} busy cycles, "
                                       f"the core reported {result.cycles} before OUT")
                rows.append(sample_row(params, pick, result, states))
    wall = time.monotonic() - start
    found = {kind: sum(r["kind"] == kind for r in rows) for kind in KINDS}
    return {"topology": topology, "P": P, "T": params.T, "config": params.cfg.to_dict(),
            "data": f"synthetic (seed {args.seed})" if flat_input else "built-in MNIST",
            "pretrain_samples": pretrain, "stream_samples_looked_at": looked_at,
            "samples_wanted": {"error": args.error, "correct": args.correct, "inference": args.infer},
            "samples_found": found, "bitexact_ok": True, "values_compared": compared,
            "summary": {kind: summarize([r for r in rows if r["kind"] == kind]) for kind in KINDS},
            "memory_bits": memory_bits(params), "samples": rows,
            "sim_cycles": sim_cycles, "sim_seconds": round(sim_seconds, 1),
            "sim_cycles_per_s": round(sim_cycles / sim_seconds) if sim_seconds else None,
            "golden_seconds": round(golden_seconds, 1), "wall_seconds": round(wall, 1)}


def sample_row(params, pick, result, states):
    """The JSON row of one measured sample: cycles, per phase and per controller state, its bound."""
    expected, trace, L = pick["expected"], pick["expected"].trace, params.L
    bound = golden_bound(params, expected, pick["keep"] if params.cfg.drop8 else None)
    phases = dict.fromkeys(PHASES + ("other",), 0)
    for state, n in states.items():
        phases[phase_of(state)] += n
    stages = ["encode/0/times"] + [f"forward/{l}/times" for l in range(1, L + 1)]
    busy = {state: n for state, n in states.items() if state != "OUT"}
    excess = excess_by_cause(busy, bound, L)
    if sum(excess.values()) != result.cycles - bound["total"] or len(busy) != len(states) - 1:
        raise RuntimeError(f"the excess causes {excess} do not add up to {result.cycles} - {bound['total']} cycles")
    return {"kind": pick["kind"], "stream_index": pick["stream_index"], "label": pick["sample"].label,
            "pred": int(expected.pred),
            "case": int(trace[f"target/{L}/case"]) if f"target/{L}/case" in trace else None,
            "layers_updated": [l for l in range(L, 0, -1) if f"update/{l}/w" in trace],
            "spikes_before_T_minus_1": [int(np.count_nonzero(np.asarray(trace[k]) < params.T - 1)) for k in stages],
            "cycles": int(result.cycles),
            "phases": phases, "states": dict(sorted(states.items())), "bound": bound, "excess_by_cause": excess,
            "ratio": round(result.cycles / bound["total"], 3)}


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------

def markdown_table(data) -> str:
    """The README-ready table of the JSON this script writes."""
    rows = ["| topology | P | error cycles | bound | ratio | correct cycles | bound | ratio | inference cycles "
            "| bound | ratio | latent bits | sign bits |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["runs"]:
        cells = [r["topology"], str(r["P"])]
        for kind in KINDS:
            s = r["summary"][kind]
            cells += [f"{s['cycles_mean']:,.0f}", f"{s['bound_mean']:,.0f}", f"{s['ratio']:.2f}"] if s else ["-"] * 3
        cells += [f"{r['memory_bits']['latent_weights']:,}", f"{r['memory_bits']['sign_planes']:,}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def git_state():
    """The commit, and what of the measured code (rtl/, sim/, golden/) differs from it: others may be
    editing the tree while a benchmark runs, so the diff's digest identifies what was measured."""
    def git(*words):
        return subprocess.run(["git", *words], capture_output=True, text=True).stdout
    diff = git("diff", "HEAD", "--", "rtl", "sim", "golden")
    return {"commit": git("rev-parse", "HEAD").strip(),
            "uncommitted_in_rtl_sim_golden": git("status", "--porcelain", "rtl", "sim", "golden").splitlines(),
            "uncommitted_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16-12-4 only")
    ap.add_argument("--topologies", nargs="+", default=["16-12-4", "196-64-10"])
    ap.add_argument("--parallelism", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--error", type=int, default=4, help="training samples with a nonzero output error")
    ap.add_argument("--correct", type=int, default=4, help="training samples with a zero output error")
    ap.add_argument("--infer", type=int, default=2, help="inference samples")
    ap.add_argument("--pretrain", type=int, default=None,
                    help="golden training samples before the measured ones (default: 1000 built-in images; 300 "
                         "synthetic samples, after which 16-12-4's hidden layer still fires: 7.5 of 12 neurons on "
                         "average, 0.8 after 1000)")
    ap.add_argument("--candidates", type=int, default=1000, help="stream samples after the pretraining to pick from")
    ap.add_argument("--seed", type=int, default=1, help="synthetic data seed (flat inputs)")
    ap.add_argument("--yosys", action="store_true", help="also Yosys cell counts of 196-64-10 at each P")
    ap.add_argument("--out", default="results/rtl/stidi_cycles.json")
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return
    if args.quick:
        args.topologies = ["16-12-4"]
    started = datetime.now(timezone.utc)
    out = {"command": " ".join(["python"] + sys.argv), **git_state(),
           "date_utc": started.isoformat(timespec="seconds"), "loadavg_start": list(os.getloadavg()),
           "host": platform.node(), "simulator": f"amaranth {amaranth.__version__} (Python simulator)",
           "cycles": "core busy cycles per sample, from the start (label and pixels in) to the result beat "
                     "(the result's cycles field; pixel loading excluded)",
           "inference_early_stop": "an inference sample runs every hidden layer for all T steps; the output layer "
                                   "exits early (spec 7, golden early_exit_steps): each block of P outputs stops "
                                   "after its first spike or at the earliest spike of the blocks before it",
           "bound_definition": BOUND_DEFINITION,
           "phases": "controller states while busy: FW_* forward, DEC_* decision, TGT* targets, BW_* backward "
                     "(incl. dropout key/prep), Q_* quantisation, OUT result",
           "runs": []}
    for topology in args.topologies:
        for P in args.parallelism:
            run = measure(topology, P, args)
            out["runs"].append(run)
            print(json.dumps({"topology": topology, "P": P, **{k: (v and {x: v[x] for x in ("cycles_mean", "bound_mean",
                                                                                             "ratio")})
                                                                for k, v in run["summary"].items()},
                              "sim_cycles_per_s": run["sim_cycles_per_s"]}), flush=True)
    if args.yosys:
        out["yosys_196-64-10"] = []
        for P in args.parallelism:
            params = StidiCoreParams(StidiConfig(topology="196-64-10"), P, debug=False)
            start = time.monotonic()
            stats = stidi_cell_stats(params)
            entry = {"topology": "196-64-10", "P": P, "script": "proc; flatten; opt; stat",
                     "forbidden": synth_check.forbidden_cells(stats), "cells": stats,
                     "seconds": round(time.monotonic() - start, 1)}
            out["yosys_196-64-10"].append(entry)
            print(json.dumps({k: entry[k] for k in ("topology", "P", "forbidden", "seconds")}), flush=True)
    out["loadavg_end"] = list(os.getloadavg())
    out["wall_seconds"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(markdown_table(out))


if __name__ == "__main__":
    main()
