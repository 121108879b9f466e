"""Same bits on any machine: the integer models' weights after a few training samples, recomputed in
a fresh interpreter, equal the digests committed in tests/data/golden_digests.json.

The digests come from whichever machine last regenerated them, so a difference here is a platform
dependence of the integer model (BLAS, numpy version, CPU) or an unintended change of it. After an intended change:
``python bench/golden_digests.py --write`` and say why in the commit. Definitions and canonical
form: bench/golden_digests.py. The float models (``--arith float``) are not pinned: their BLAS sums
may round differently from machine to machine.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "golden_digests.py"
COMMITTED = ROOT / "tests" / "data" / "golden_digests.json"


def test_weights_after_training_match_the_committed_digests():
    # A fresh process: nothing imported or cached by this test session can make the digests agree.
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    computed = json.loads(run.stdout)
    committed = json.loads(COMMITTED.read_text())
    assert computed["canonical_form"] == committed["canonical_form"]
    for mine, pinned in zip(computed["cases"], committed["cases"], strict=True):
        assert mine == pinned, f"{mine['rule']} {mine['topology']}: weights differ from the committed digest"
