# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Thermal motion: diffusion, mobility and conductivity of a lithium-like ion
#
# The follow-up paper's model system (physics.md 5.6): a simple cubic framework (a = 3 Å,
# m = 34 amu, central springs 520 and 170 meV/Å^2) and a lithium-like ion (6.75 amu) with a
# Yukawa repulsion U0 exp(-r / 0.5 Å) / r. The framework at temperature T drags and kicks the
# ion (fluctuation-dissipation theorem); we compute the landscape the ion moves in, its
# diffusion coefficient, mobility and Nernst-Einstein conductivity, and the activation energy
# against the static migration barriers. Run with `python notebooks/thermal_diffusion.py
# [--quick] [--out DIR]`; figures and numbers go to `DIR` (default `out/notebooks/thermal/`,
# git-ignored; `quick/` inside it for quick runs; `--out notebooks/results/thermal` refreshes the
# committed results).

# %%
import argparse
from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxion.thermal as jt  # noqa: E402
from jaxion.experiments import write_json  # noqa: E402

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (2 temperatures, short runs)")
parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "notebooks" / "thermal",
                    help="results folder (default out/notebooks/thermal, git-ignored)")
args, _ = parser.parse_known_args()  # a notebook kernel passes its own arguments
OUT = args.out / ("quick" if args.quick else "")
OUT.mkdir(parents=True, exist_ok=True)
record = {"quick": args.quick}

# %% [markdown]
# ## The landscape and its barriers
# Rigid framework, framework relaxed exactly around the fixed ion (static minimisation, far
# lattice by the static Green's function), and the linear-response softening of section 4,
# which for this short-ranged repulsion is unbounded below next to every site.

# %%
model = jt.follow_up_model(4000.0)
barriers = jt.migration_barriers(model)
record["barriers_meV"] = {name: float(barrier.barrier) for name, barrier in barriers.items()}
print("migration barriers (meV):", record["barriers_meV"])
landscape = jt.relaxed_landscape(model, grid=6 if args.quick else 16)

# %% [markdown]
# ## Diffusion over a temperature series (white-noise Langevin, relaxed landscape)
# Each trajectory starts at a cell centre with a Maxwell velocity; the MSD of 12 ps segments is
# fitted over 1-12 ps and the trajectories are the independent blocks of the error bars.

# %%
temperatures = [400.0, 600.0] if args.quick else [300.0, 400.0, 500.0, 600.0, 800.0]
options = dict(trajectories=32, t1=240.0, dt=0.005, save_every=20, landscape=landscape, batch=16, progress=True)
if args.quick:  # a smoke run: too short for the 12 ps segments, so whole runs after 2 ps, fitted over 0.5-4 ps
    options.update(trajectories=4, t1=8.0, batch=4, progress=False, equilibration=2.0, segment=None,
                   fit_window=(0.5, 4.0))
results, fit = jt.arrhenius(model, temperatures, **options)
record["series"] = [
    {"temperature_K": r.temperature, "D_A2_per_ps": float(r.diffusion.D_scalar),
     "D_error": float(r.diffusion.D_scalar_error), "D_cm2_per_s": float(r.diffusion.D_scalar) * 1e-4,
     "kinetic_temperature_K": float(r.kinetic_temperature.temperature),
     "kinetic_temperature_error": float(r.kinetic_temperature.temperature_error),
     "conductivity_S_per_cm_at_1e22": float(r.conductivity(1e22).value),
     "conductivity_error": float(r.conductivity(1e22).error)}
    for r in results
]
record["arrhenius"] = {"activation_energy_meV": float(fit.activation_energy),
                       "activation_energy_error": float(fit.activation_energy_error),
                       "prefactor_A2_per_ps": float(fit.prefactor), "chi2_per_dof": float(fit.chi2_per_dof)}
for row in record["series"]:
    print(row)
print("Arrhenius:", record["arrhenius"])

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for r in results:
    msd = np.trace(np.asarray(r.diffusion.msd_tensor), axis1=-2, axis2=-1).mean(axis=0)
    left.plot(r.diffusion.lags, msd, label=f"{r.temperature:.0f} K")
left.set(xlabel="lag (ps)", ylabel="MSD (Å$^2$)", title="mean-squared displacement")
left.legend()
inverse = 1000.0 / np.array(temperatures)
values = np.array([row["D_A2_per_ps"] for row in record["series"]])
errors = np.array([row["D_error"] for row in record["series"]])
right.errorbar(inverse, values, errors, fmt="o", label="Langevin")
line = fit.prefactor * np.exp(-fit.activation_energy / (jt.BOLTZMANN_MEV * np.array(temperatures)))
right.plot(inverse, line, "-", label=f"E_a = {fit.activation_energy:.0f} ± {fit.activation_energy_error:.0f} meV "
           f"(relaxed barrier {record['barriers_meV']['relaxed']:.0f} meV)")
right.set(yscale="log", xlabel="1000 / T (1/K)", ylabel="D (Å$^2$/ps)", title="Arrhenius")
right.legend()
figure.tight_layout()
figure.savefig(OUT / "diffusion.png", dpi=120)

# %% [markdown]
# ## Mobility two ways
# Einstein (D / k_B T) against the mean drift under a small applied force (linear response).

# %%
hot = results[-1]
force = jnp.array([0.0, 0.0, 2.0])  # meV/Å: ~ k_B T / (25 a) at 600 K, well inside linear response
drift_options = {key: value for key, value in options.items() if key not in ("segment", "fit_window")}
drift = jt.drift_mobility(model, hot.temperature, force, **{**drift_options, "trajectories": 4 if args.quick else 128})
record["mobility"] = {"temperature_K": hot.temperature, "einstein": float(hot.mobility.value),
                      "einstein_error": float(hot.mobility.error), "drift": float(drift.value),
                      "drift_error": float(drift.error)}
print("mobility (Å^2/(ps meV)):", record["mobility"])

# %%
write_json(OUT / "thermal.json", record)  # strict JSON: NaN (e.g. chi^2 of a two-point fit) -> null
print("wrote", OUT)
