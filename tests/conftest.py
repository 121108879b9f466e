import os

# Small per-sample matrix products: BLAS threads only slow the golden models down (see cli/main.py).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
