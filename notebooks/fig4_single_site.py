# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Fig. 4: one interacting mass in the simple cubic lattice
#
# k1 = 15, k2 = 5, lattice constant 2, Phi0 = 0.01, widths 1/2, 1, 2, 4, impact parameter
# s in {0, 1}, speeds 1 to 80. Full simulations on a periodic L^3 lattice (the paper: L = 50)
# against Eq. 13 (solid) and the low-speed line Eq. 23 (dashed), which gives Delta ~ v.
# With `--quick`: one width, 3 speeds, L = 10 (a smoke run: such a small box is far from the
# infinite lattice at low speed, see `finite_size.py`). With `--method kernel`: the same periodic
# lattice integrated out exactly into a memory kernel on the interacting mass (`jaxion.kernel`),
# minutes instead of an hour; results in `kernel/`. Both run the paper's 50 speeds per curve;
# `--speeds N` runs N instead (results in `speedsN/`). Results go under `--out` (default
# `out/notebooks/fig4_single_site/`, git-ignored; `quick/` with `--quick`; `--out
# notebooks/results/fig4_single_site` refreshes the committed gallery).

# %%
from pathlib import Path

from jaxion import experiments, plotting

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
DEFAULT = HERE.parent / "out" / "notebooks" / "fig4_single_site"  # git-ignored
data, OUT, RESULTS = experiments.cubic_figure_from_command_line("fig4", DEFAULT)  # also parses --out

# %% [markdown]
# Full-lattice points (circles) with the kernel method's (crosses) where both runs are saved; the
# agreement file also holds the two methods' largest relative difference at their common speeds.

# %%
full, kernel = experiments.full_and_kernel("fig4", data, RESULTS)
plotting.save(plotting.fig4(full, kernel), OUT / "fig4.png")
experiments.write_agreement(data, ("eq13",), OUT, (full, kernel))
