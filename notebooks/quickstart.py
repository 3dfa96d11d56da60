# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # jaxion quick start
#
# A tour of the API in five cells: a lattice and its phonons, the recoil matrix (Eq. 23),
# the perturbative loss (Eq. 13) against its low-speed limit, and a short full-lattice
# simulation of one pass. Run as a script with `python notebooks/quickstart.py [--quick]`;
# figures and numbers go to `--out` (default `out/notebooks/quickstart/`, git-ignored; `quick/` inside
# it with `--quick`; `--out notebooks/results/quickstart` refreshes the committed gallery).

# %%
import argparse
import json
from pathlib import Path

import jax.numpy as jnp

import jaxion as jx
from jaxion import experiments, plotting

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")  # the tour is quick either way
parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "notebooks" / "quickstart",
                    help="results folder (default out/notebooks/quickstart, git-ignored)")
args, _ = parser.parse_known_args()  # a notebook kernel passes its own arguments
OUT = args.out / ("quick" if args.quick else "")  # quick runs never overwrite full-size results

# %% [markdown]
# ## A framework and its phonons
# The paper's simple cubic lattice: springs k1 = 15 to the 6 nearest and k2 = 5 to the 12
# next-nearest neighbours, lattice constant 2 (lengths in the oscillator length l).

# %%
lattice = jx.SimpleCubic(k1=15.0, k2=5.0, spacing=2.0)
plotting.save(plotting.bands(lattice), OUT / "bands.png")

# %% [markdown]
# ## Recoil matrix and losses
# For this lattice the recoil matrix is isotropic, M = m0 * identity with m0 ~ 5.59e-4.

# %%
M = jx.recoil_matrix(lattice)
system = jx.System(lattice, jx.Gaussian(phi0=0.01, width=1.0), sites=[(0, 0, 0)], mass=(jnp.inf, jnp.inf, 1.0))
speeds = jnp.geomspace(0.5, 80.0, 12)
eq13 = jx.loss_perturbative(system, speeds, start=(0.0, 0.0))  # Eq. 13
eq23 = jx.loss_low_speed(system, speeds, start=(0.0, 0.0))  # Eq. 23: Delta proportional to v
print("recoil matrix diagonal:", M.diagonal())
print("Eq. 13 / Eq. 23 at v = 0.5:", float(eq13[0] / eq23[0]))

# %% [markdown]
# ## One pass through the whole lattice
# The ion starts 7 widths before the interacting mass at speed 20 and stops 7 widths past it.
# A 12^3 periodic box is small, but at this speed the ion is gone before sound comes back.

# %%
result = jx.single_pass(system, 20.0, start=(0.0, 0.0), method="full", size=12)
energy = result.trajectory.energy[jnp.isfinite(result.trajectory.ts)]  # saved times past the stop are inf
drift = float((jnp.max(energy) - jnp.min(energy)) / jnp.abs(energy[0]))
eq13_at_20 = float(jx.loss_perturbative(system, 20.0, start=(0.0, 0.0)))
print(f"simulated loss {float(result.loss):.4e}, Eq. 13 {eq13_at_20:.4e}, relative energy drift {drift:.1e}")

# %%
summary = dict(recoil_diagonal=M.diagonal(), speed=speeds, eq13=eq13, eq23=eq23,
               simulation=dict(speed=20.0, size=12, loss=result.loss, eq13=eq13_at_20, energy_drift=drift))
OUT.mkdir(parents=True, exist_ok=True)
(OUT / "quickstart.json").write_text(json.dumps(experiments._jsonable(summary), indent=1))
