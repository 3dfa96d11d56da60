# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Screening frameworks by drag, a gradient-based design question, and a fit
#
# Run as a script: `python notebooks/screening.py [--quick] [--out DIR]`; writes to `DIR` (default
# `out/notebooks/screening/`, git-ignored; `quick/` inside it with `--quick`; `--out
# notebooks/results/screening` refreshes the committed gallery).
#
# 1. Rank the cited materials table (`jaxion/data/materials.csv`) by the drag `tr(Gamma)/3`
#    (Eq. 27, `Gamma = H_U L H_U`) on an ion whose potential well has curvature 1 eV/Å^2 (isotropic),
#    with the logarithmic sensitivity of each drag to the elastic constants.
# 2. Design: by how much must C44 rise to halve the drag? Newton's method on `ln C44` with the
#    gradient from `jax.grad` through the Christoffel quadrature.
# 3. Fit: recover the springs (k1, k2) of the paper's lattice from a synthetic Eq.-13 loss curve.

# %%
import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jaxion  # noqa: E402,F401  (float64)
from jaxion.dissipation import loss_perturbative  # noqa: E402
from jaxion.elastic import ElasticContinuum  # noqa: E402
from jaxion.fitting import fit_multistart, sample_starts  # noqa: E402
from jaxion.lattice import SimpleCubic  # noqa: E402
from jaxion.materials import load_materials, material_info  # noqa: E402
from jaxion.potentials import Gaussian  # noqa: E402
from jaxion.screening import drag_measure, rank_by_drag  # noqa: E402
from jaxion.system import System  # noqa: E402

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "notebooks" / "screening",
                    help="results folder (default out/notebooks/screening, git-ignored)")
args, _ = parser.parse_known_args(sys.argv[1:])
OUT = args.out / ("quick" if args.quick else "")  # quick runs never overwrite full-size results
OUT.mkdir(parents=True, exist_ok=True)
CURVATURE = jnp.eye(3)  # eV / Å^2

# %% [markdown]
# ## 1. Ranking

# %%
materials = load_materials()
info = material_info()
ranking = rank_by_drag(materials, CURVATURE)
lines = ["| rank | material | class | drag (amu/ps) | dln/dln rho | dln/dln C11 | dln/dln C12 | dln/dln C44 | most sensitive |",
         "|---|---|---|---|---|---|---|---|---|"]
for i, entry in enumerate(ranking, 1):
    s = entry.sensitivities
    lines.append(f"| {i} | {entry.name} | {info[entry.name].material_class} | {entry.drag:.4g} | {s['density']:+.3f} | "
                 f"{s['c11']:+.3f} | {s['c12']:+.3f} | {s['c44']:+.3f} | {entry.most_sensitive} |")
table = "\n".join(lines)
print(table)
(OUT / "ranking.md").write_text(table + "\n")

fig, ax = plt.subplots(figsize=(7, 3.5))
names = [entry.name for entry in ranking]
ax.barh(names, [entry.drag for entry in ranking], color="tab:blue")
ax.set_xscale("log")
ax.set_xlabel("drag tr(Γ)/3 for H_U = 1 eV/Å² (amu/ps)")
ax.invert_yaxis()
ax.set_title("Frameworks ranked by drag (least first)")
fig.tight_layout()
fig.savefig(OUT / "ranking.png", dpi=120)

# %% [markdown]
# ## 2. Design: how much must C44 rise to halve the drag?
#
# Solve `ln drag(C44 e^x) = ln drag(C44) - ln 2` for `x` by Newton's method; the derivative
# `d ln drag / d x` is the C44 sensitivity of the ranking, here from `jax.grad`.

# %%
def c44_factor(continuum, goal=0.5, iterations=8):
    voigt = continuum.voigt
    mask = jnp.diag(jnp.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))

    def log_drag(x):
        scaled = voigt + (jnp.exp(x) - 1.0) * voigt * mask
        return jnp.log(drag_measure(ElasticContinuum(continuum.density, voigt=scaled), CURVATURE))

    target = log_drag(0.0) + jnp.log(goal)
    x = 0.0
    for _ in range(iterations):
        value, slope = jax.value_and_grad(log_drag)(x)
        x = x - (value - target) / slope
    return float(jnp.exp(x)), float(jnp.exp(log_drag(x) - log_drag(0.0)))


design = {}
for name in names[: (2 if args.quick else len(names))]:
    factor, achieved = c44_factor(materials[name])
    design[name] = {"c44_factor": factor, "drag_ratio": achieved}
    print(f"{name}: C44 x {factor:.3f} halves the drag (achieved ratio {achieved:.6f})")

# %% [markdown]
# ## 3. Fitting demo: springs from a loss curve

# %%
speeds = jnp.geomspace(1.0, 30.0, 8)


def build(p):
    return System(SimpleCubic(k1=p["k1"], k2=p["k2"]), Gaussian(0.01, 1.0))


def model(system):
    return loss_perturbative(system, speeds, (0.5, 0.0), n_radial=12, n_face=8)


target = model(build({"k1": 15.0, "k2": 5.0}))
starts = sample_starts(jax.random.key(1), {"k1": (8.0, 30.0), "k2": (2.0, 10.0)}, 2 if args.quick else 4)
result = fit_multistart(build, model, target, starts, positive=True, max_steps=60)
fitted = {key: float(value) for key, value in result.params.items()}
print("fitted springs", fitted, "objective", float(result.loss), "steps", int(result.n_steps))

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.semilogy(jnp.arange(int(result.n_steps)), result.history[: int(result.n_steps)], "o-")
ax.set_xlabel("L-BFGS iteration")
ax.set_ylabel("objective (log residuals)")
ax.set_title("Recovering (k1, k2) = (15, 5)")
fig.tight_layout()
fig.savefig(OUT / "fit_history.png", dpi=120)

(OUT / "summary.json").write_text(json.dumps({
    "curvature_ev_per_a2": 1.0,
    "ranking": [{"name": e.name, "drag_amu_per_ps": e.drag, "sensitivities": e.sensitivities,
                 "most_sensitive": e.most_sensitive} for e in ranking],
    "halve_drag_c44": design,
    "fit": {"params": fitted, "objective": float(result.loss), "steps": int(result.n_steps),
            "converged": bool(result.converged)},
}, indent=2))
