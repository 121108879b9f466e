"""Per-sample traces: every intermediate value of one sample, by phase, layer and name.

A trace is an ordered mapping from keys ``"<phase>/<layer>/<name>"`` to integer numpy arrays, e.g.
``"forward/1/v"`` with shape (T, N1): the membrane of layer 1 after each time step. Phases appear
in execution order (``encode``, ``forward``, ``desire``, ``update`` for desire BP); the layer is
the index of the layer the value belongs to (0 = input). Axis 0 of a per-step array is the time step.
On disk it is an ``.npz`` with the same keys. The RTL debug stream is decoded into the same keys
so ``first_divergence`` can compare the two and name the first value that differs.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class Trace(dict):
    """Insertion-ordered ``{"phase/layer/name": array}``."""

    def record(self, phase: str, layer: int, name: str, value) -> None:
        self[f"{phase}/{layer}/{name}"] = np.array(value, copy=True)

    def save(self, path) -> None:
        np.savez_compressed(path, **{key.replace("/", "|"): value for key, value in self.items()})

    @classmethod
    def load(cls, path) -> "Trace":
        with np.load(Path(path)) as archive:
            return cls((key.replace("|", "/"), archive[key]) for key in archive.files)


@dataclass(frozen=True)
class Divergence:
    phase: str
    layer: int
    name: str
    index: tuple      # position inside the array; for per-step arrays index[0] is the time step
    expected: object
    got: object

    def __str__(self) -> str:
        where = ", ".join(str(i) for i in self.index)
        return (f"first divergence: phase {self.phase}, layer {self.layer}, {self.name}[{where}]: "
                f"expected {self.expected}, got {self.got}")


def first_divergence(expected: Trace, got: Trace, keys=None) -> Divergence | None:
    """The first differing value in ``expected``'s key order (then row-major inside an array).

    Only keys present in both traces are compared unless ``keys`` names them; a key named in
    ``keys`` but missing from ``got`` is itself a divergence.
    """
    for key in keys if keys is not None else expected.keys():
        phase, layer, name = key.split("/")
        want = np.asarray(expected[key])
        if key not in got:
            if keys is None:
                continue
            return Divergence(phase, int(layer), name, (), "present", "missing")
        have = np.asarray(got[key])
        if want.shape != have.shape:
            return Divergence(phase, int(layer), name, (), f"shape {want.shape}", f"shape {have.shape}")
        diff = np.argwhere(want != have)
        if len(diff):
            index = tuple(int(i) for i in diff[0])
            return Divergence(phase, int(layer), name, index, want[index].item(), have[index].item())
    return None
