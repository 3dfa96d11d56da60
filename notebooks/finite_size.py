# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Finite-size study: single-pass loss versus lattice side L
#
# One interacting mass of the simple cubic lattice (k1 = 15, k2 = 5, alpha = 2, Phi0 = 0.01,
# width 1, head-on) at fixed speed. The periodic L^3 box misses the waves longer than L and lets
# sound come back to the site; the loss converges to the infinite-lattice Eq. 13 as L grows.
# The lower the speed, the longer the waves the ion excites and the larger L must be.
# With `--quick`: L = 8 and 12 only. Results go to `--out` (default `out/notebooks/finite_size/`,
# git-ignored; `quick/` inside it with `--quick`; `--out notebooks/results/finite_size` refreshes the
# committed gallery).

# %%
import argparse
from pathlib import Path

from jaxion import experiments, plotting

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--speed", type=float, default=4.0)
parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "notebooks" / "finite_size",
                    help="results folder (default out/notebooks/finite_size, git-ignored)")
args, _ = parser.parse_known_args()
OUT = args.out / ("quick" if args.quick else "")  # quick runs never overwrite full-size results

# %%
data = experiments.finite_size(sizes=(8, 12, 16, 24, 32, 48), speed=args.speed, quick=args.quick, out=OUT)

# %%
plotting.save(plotting.finite_size(data), OUT / "finite_size.png")
curve = data["curves"][0]
for size, difference in zip(curve["size"], curve["relative_difference"]):
    print(f"L = {size:3d}: simulation / Eq. 13 - 1 = {difference:+.2e}")
