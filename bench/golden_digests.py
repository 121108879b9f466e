"""Golden digests: the integer models' weights after a few training samples, as sha256, so that
every machine can check it computes the same bits (tests/test_determinism.py).

    python bench/golden_digests.py            # print this machine's digests (JSON)
    python bench/golden_digests.py --write    # regenerate tests/data/golden_digests.json

Each case trains a fresh ``arith="fixed"`` learner (``learners.make_learner``) on the first
``SAMPLES`` images of the built-in training set, in file order, as steps 0..SAMPLES-1 of epoch 0.
Canonical form of the digest: sha256 over the learner's ``weight_arrays()`` in layer order (the
number after the array name's letter), each in its canonical shape (desire (N_l, N_{l-1}), STiDi
fc (N_out, N_in) / conv (Cout, Cin, k, k)), C order, as int64 little-endian bytes, concatenated.
Regenerate only for an intended change of the integer model, and say so in the commit.
"""

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

from mfsnn.golden.data import load_dataset  # noqa: E402
from mfsnn.golden.learners import make_learner  # noqa: E402

DIGESTS = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden_digests.json"
SAMPLES = 50
#: Small topologies that still reach every datapath feature: hidden desire (exact and pow2 planes),
#: stochastic rounding, dropout, 196-input downsampling, STiDi fc, conv (with the displacement of a
#: conv layer below another), pooling and hidden dropout.
CASES = [
    dict(rule="desire", topology="784-32-10", seed=1, weight_bits=24, options={}),
    dict(rule="desire", topology="196-32-16-10", seed=7, weight_bits=16,
         options={"error_mode": "pow2", "rounding": "stochastic"}),
    dict(rule="stidi", topology="784-32-10", seed=1, weight_bits=16, options={}),
    dict(rule="stidi", topology="14x14-c3x4-p2-c3x4-10", seed=3, weight_bits=16, options={"drop8": 37}),
]
CANONICAL_FORM = ("sha256 over weight_arrays() in layer order, canonical shapes, C order, int64 little-endian; "
                  f"fixed learner trained on builtin train[0:{SAMPLES}] in file order, steps 0..{SAMPLES - 1}, "
                  "epoch 0")


def weights_digest(arrays: dict) -> str:
    """The canonical sha256 of a learner's integer weight arrays (module docstring)."""
    digest = hashlib.sha256()
    for name in sorted(arrays, key=lambda name: int(re.fullmatch(r"[wW](\d+)", name).group(1))):
        if arrays[name].dtype != np.int64:
            raise TypeError(f"weight array {name} is {arrays[name].dtype}, not the integer model's int64")
        digest.update(np.ascontiguousarray(arrays[name], dtype="<i8").tobytes())
    return digest.hexdigest()


def golden_digests() -> dict:
    train = load_dataset("builtin").train
    rows = []
    for case in CASES:
        learner = make_learner(case["rule"], "fixed", case["topology"], case["seed"], case["weight_bits"],
                               **case["options"])
        learner.train_samples(train.images[:SAMPLES], train.labels[:SAMPLES], 0, 0)
        rows.append(dict(case, sha256=weights_digest(learner.weight_arrays())))
    return {"canonical_form": CANONICAL_FORM, "cases": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true",
                        help="write tests/data/golden_digests.json instead of printing")
    args = parser.parse_args()
    text = json.dumps(golden_digests(), indent=2) + "\n"
    if args.write:
        DIGESTS.parent.mkdir(exist_ok=True)
        DIGESTS.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
