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
# infinite lattice at low speed, see `finite_size.py`).

# %%
from pathlib import Path

from jaxion import experiments, plotting

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
data, OUT = experiments.cubic_figure_from_command_line("fig4", HERE / "results" / "fig4_single_site")

# %%
plotting.save(plotting.fig4(data), OUT / "fig4.png")
experiments.write_agreement(data, ("eq13",), OUT)
