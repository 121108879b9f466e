"""Analytic operation count of one sample (notes/desire-bp.md section 10 counting model), from
the golden model's own run of that sample: the lower bound the RTL's cycles are compared with.

ops (elementary integer operations, shifts by constants free):
  encoder 3*T*N0; neurons 4*T*sum N_l; forward synaptic adds sum_l (input spikes of l) * N_l;
  training only: traces 3*T*sum N_{l-1} (decay, add, write); desire sum_{l>=2} nnz(g_l) * N_{l-1};
  update sum over updated neurons j of (c_j + 3) * N_{l-1}.
The bound for P lanes is ops / P.
"""


from ..golden import desire as golden
from ..golden.desire_config import DesireConfig


def sample_ops(cfg: DesireConfig, weights, pixels, label: int, step: int = 0, train: bool = True) -> dict:
    N, T, L = cfg.topology, cfg.time_steps, cfg.layers
    masks = golden.dropout_masks(cfg, step) if train else None
    fwd = golden.forward(cfg, weights, golden.encode(cfg, pixels), masks, train=train)
    ops = {"encoder": 3 * T * N[0], "neurons": 4 * T * sum(N[1:])}
    syn = 0
    for l in range(1, L + 1):
        source = fwd.spikes[l - 1]
        spikes_in = int(source.sum()) if l == 1 else int(source[:-1].sum())
        syn += spikes_in * N[l]
    ops["forward_synaptic"] = syn
    if train:
        ops["traces"] = 3 * T * sum(N[:-1])
        care, want, _ = golden.desires(cfg, weights, fwd.counts, masks, label)
        ops["desire"] = sum(int((care[l] & masks[l]).sum()) * N[l - 1] for l in range(L, 1, -1))
        update = 0
        for l in range(1, L + 1):
            active = care[l] & masks[l] & (fwd.counts[l] > 0)
            update += int(((fwd.counts[l][active] + 3) * N[l - 1]).sum())
        ops["update"] = update
    ops["total"] = sum(ops.values())
    return ops


def lower_bound(ops: dict, parallelism: int) -> float:
    return ops["total"] / parallelism


def sample_cycle_limit(cfg: DesireConfig, parallelism: int) -> int:
    """Cycles within which the core must finish any one sample, whatever its spikes: the counting
    model's worst case (every neuron spiking at every step, every neuron updated, every error bit
    set), layers rounded up to whole blocks of P lanes, times 8, plus handshakes and pipeline fill.
    A testbench that waits longer than this has found a hang, not a slow sample."""
    N, T = cfg.topology, cfg.time_steps
    blocks = [-(-n // parallelism) for n in N]
    block_ops = sum(n_in * b_out for n_in, b_out in zip(N[:-1], blocks[1:]))       # one per P synapses
    per_synapse_block = T + T.bit_length() + T + 3                     # forward, desire planes, update
    ops = 3 * T * N[0] + 4 * T * sum(blocks[1:]) + 3 * T * sum(N[:-1]) + per_synapse_block * block_ops
    return 8 * ops + 4 * N[0] + 10_000
