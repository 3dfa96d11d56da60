# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Fig. 2: dissipation in a chain
#
# An ion (mass mu = 1) passes one mass of a periodic chain (k_par = k_perp = 99/4, confinement
# kappa in {1, 0}) with a Gaussian interaction (Phi0 = 0.01, widths 1/2, 1, 2, 4) at impact
# parameter s in {0, 1}. Full simulations (`single_pass(method="full")`) against the Eq. 13
# quadrature and the closed form Eq. 14. With `--quick`: one confinement, one width, 3 speeds.
# Data go to `--out` (default `out/notebooks/fig2_chain/`, git-ignored; `quick/` inside it with
# `--quick`; `--out notebooks/results/fig2_chain` refreshes the committed gallery), `fig2.json` as
# each curve finishes.

# %%
import argparse
from pathlib import Path

from jaxion import experiments, plotting

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--size", type=int, default=100, help="chain masses (periodic)")
parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "notebooks" / "fig2_chain",
                    help="results folder (default out/notebooks/fig2_chain, git-ignored)")
args, _ = parser.parse_known_args()
OUT = args.out / ("quick" if args.quick else "")  # quick runs never overwrite full-size results

# %%
data = experiments.fig2(size=args.size, quick=args.quick, out=OUT)

# %%
plotting.save(plotting.fig2(data), OUT / "fig2.png")
experiments.write_agreement(data, ("eq13", "eq14"), OUT)
