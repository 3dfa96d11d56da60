# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Fig. 5: four and eight interacting masses
#
# The ion crosses the centre of a cube face, (alpha/2, alpha/2, z), interacting with the four
# masses of that face or the eight masses of the cell; Phi0 = 0.0025, otherwise as Fig. 4.
# Eq. 23 with the Hessian summed over the sites (neglecting the phase between neighbouring
# masses, which long waves do not see) predicts the low-speed loss. With `--quick`: the face
# only, one width, 3 speeds, L = 10. `--method kernel`: the lattice integrated out exactly, as in
# `fig4_single_site.py`.
# Results go under `--out` (default `out/notebooks/fig5_multi_site/`, git-ignored; `quick/` with
# `--quick`; `--out notebooks/results/fig5_multi_site` refreshes the committed gallery).

# %%
from pathlib import Path

from jaxion import experiments, plotting

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
DEFAULT = HERE.parent / "out" / "notebooks" / "fig5_multi_site"  # git-ignored
data, OUT, RESULTS = experiments.cubic_figure_from_command_line("fig5", DEFAULT)  # also parses --out

# %% [markdown]
# Full-lattice points (circles) with the kernel method's (crosses) where both runs are saved; the
# agreement file also holds the two methods' largest relative difference at their common speeds.

# %%
full, kernel = experiments.full_and_kernel("fig5", data, RESULTS)
plotting.save(plotting.fig5(full, kernel), OUT / "fig5.png")
experiments.write_agreement(data, ("eq13", "eq23"), OUT, (full, kernel))
