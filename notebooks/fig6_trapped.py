# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Fig. 6: a trapped ion, whole lattice against the time-local equation of motion
#
# Eight framework masses at (0, 0, j alpha), j = 0..7, on the paper's simple cubic lattice
# (k1 = 15, k2 = 5, alpha = 2), Gaussian interaction Phi0 = 1, lambda = 1/2. The ion starts at
# z = 3.5 alpha (between the 4th and 5th masses) with speed 7.5 along z, too slow to climb the
# barriers (kinetic energy 0.71 < Phi0), and rattles between them while the lattice drains its
# energy. We compare
#
# * the **full** solution (ion plus the whole periodic L^3 lattice, Eqs. 3-4) at L = 100 and an
#   L-convergence set L = 24, 32, 48, 64;
# * the **time-local** equation (Eq. 26), with c = 1/2 (Born-Oppenheimer) and c = 1 (the paper's
#   published code), with the drag or the softening switched off, and with the finite-L Green's
#   function matching each full run.
#
# Reported per run: the oscillation period (mean interval between upward crossings of the trap
# centre z0 = 7), the energy decay per cycle (the ion's kinetic energy at successive upward
# crossings of z0, where the potential is the same for every description, fitted by a geometric
# ratio), the amplitude decay per cycle, and against the full run at the largest L the RMS
# difference of z(t).
#
#     python notebooks/fig6_trapped.py            # the real thing: hours (L = 100 full run)
#     python notebooks/fig6_trapped.py --quick    # L = 10, tau = 2: a smoke run (< 60 s)
#
# Every run writes ``<name>.npz`` (ts, position, velocity, energy) and ``<name>.json`` (its
# analysis and wall time) into ``notebooks/results/fig6/`` (``fig6_quick/`` with ``--quick``) as
# soon as it finishes, and is skipped when its file exists (``--force`` recomputes), so an
# interrupted session resumes where it stopped. Full runs show a progress bar.

# %%
import argparse
import json
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import jaxion  # noqa: F401  (float64)
from jaxion.lattice import SimpleCubic
from jaxion.potentials import Gaussian
from jaxion.simulation import simulate
from jaxion.system import System

parser = argparse.ArgumentParser(description="Fig. 6: trapped ion, full lattice vs time-local")
parser.add_argument("--quick", action="store_true", help="L = 10 and tau = 2 only (smoke run)")
parser.add_argument("--force", action="store_true", help="recompute runs whose results exist")
parser.add_argument("--full-solver", default="symplectic", help="solver of the full runs (default Blanes-Moan)")
parser.add_argument("--full-dt", type=float, default=0.01, help="time step of the full runs")
args, _ = parser.parse_known_args(sys.argv[1:] if __name__ == "__main__" else [])

QUICK = args.quick
TAU = 2.0 if QUICK else 30.0
L_MAIN = 10 if QUICK else 100
L_CONVERGENCE = () if QUICK else (24, 32, 48, 64)
SAVE_EVERY = args.full_dt  # on the full runs' step grid; a cycle lasts ~0.8 periods
N_SAVE = int(round(TAU / SAVE_EVERY)) + 1
OUT = Path(__file__).resolve().parent / "results" / ("fig6_quick" if QUICK else "fig6")
OUT.mkdir(parents=True, exist_ok=True)

Z0 = 7.0  # trap centre, z = 3.5 alpha
SYSTEM = System(SimpleCubic(), Gaussian(1.0, 0.5), sites=[(0, 0, j) for j in range(8)], mass=(jnp.inf, jnp.inf, 1.0))
POSITION = jnp.array([0.0, 0.0, Z0])
VELOCITY = jnp.array([0.0, 0.0, 7.5])

# %% [markdown]
# ## Analysis of one trajectory

# %%


def crossings(ts, z, vz):
    """Times and speeds of upward crossings of ``Z0``: the cubic Hermite interpolant of ``z``
    through the saved positions and velocities (error ~ dt^4; linear interpolation of ``vz``
    would be off by ~dt^2 |vz''| / 8, a few 1e-3 at dt = 0.01)."""
    ok = np.isfinite(ts)
    ts, z, vz = ts[ok], z[ok], vz[ok]
    up = np.nonzero((z[:-1] <= Z0) & (z[1:] > Z0))[0]  # the start (z = Z0, moving up) counts
    h = ts[up + 1] - ts[up]
    z0, z1, v0, v1 = z[up], z[up + 1], h * vz[up], h * vz[up + 1]
    s = (Z0 - z0) / (z1 - z0)
    for _ in range(8):  # Newton on the Hermite cubic, from the linear estimate
        value = (2 * s**3 - 3 * s**2 + 1) * z0 + (3 * s**2 - 2 * s**3) * z1
        value = value + (s**3 - 2 * s**2 + s) * v0 + (s**3 - s**2) * v1
        slope = (6 * s**2 - 6 * s) * (z0 - z1) + (3 * s**2 - 4 * s + 1) * v0 + (3 * s**2 - 2 * s) * v1
        s = np.clip(s - (value - Z0) / slope, 0.0, 1.0)
    slope = (6 * s**2 - 6 * s) * (z0 - z1) + (3 * s**2 - 4 * s + 1) * v0 + (3 * s**2 - 2 * s) * v1
    return ts[up] + s * h, slope / h


def geometric_ratio(values):
    """Per-step ratio of a geometric fit ``values_n ~ A r^n`` (``nan`` with fewer than 2 values)."""
    values = np.asarray(values)
    if len(values) < 2 or np.any(values <= 0):
        return float("nan")
    return float(np.exp(np.polyfit(np.arange(len(values)), np.log(values), 1)[0]))


def analyse(ts, position, velocity):
    """Period, energy and amplitude decay per cycle (see the introduction)."""
    z, vz = position[:, 2], velocity[:, 2]
    times, speeds = crossings(ts, z, vz)
    kinetic = SYSTEM.ion_kinetic_energy(np.stack([0 * speeds, 0 * speeds, speeds], axis=-1))
    amplitudes = [0.5 * np.ptp(z[(ts >= a) & (ts < b)]) for a, b in zip(times[:-1], times[1:])]
    return dict(
        cycles=int(max(len(times) - 1, 0)),
        period=float(np.mean(np.diff(times))) if len(times) > 1 else float("nan"),
        first_periods=[float(p) for p in np.diff(times)[:3]],
        energy_ratio_per_cycle=geometric_ratio(np.asarray(kinetic)),
        amplitude_ratio_per_cycle=geometric_ratio(amplitudes),
        kinetic_at_crossings=[float(k) for k in np.asarray(kinetic)],
    )


# %% [markdown]
# ## Runs (each saved as it finishes)

# %%


def run(name, **options):
    """Run (or load) one trajectory; ``options`` go to ``jaxion.simulate``."""
    path = OUT / f"{name}.npz"
    if path.exists() and not args.force:
        data = dict(np.load(path))
        print(f"{name}: loaded from {path.name}", flush=True)
        return data
    print(f"{name}: running {options} ...", flush=True)
    began = time.perf_counter()
    trajectory = simulate(SYSTEM, POSITION, VELOCITY, TAU, n_save=N_SAVE, **options)
    data = {key: np.asarray(getattr(trajectory, key)) for key in ("ts", "position", "velocity", "energy")}
    seconds = time.perf_counter() - began
    np.savez(path, **data)
    summary = dict(name=name, options={k: v for k, v in options.items() if k != "progress"}, wall_seconds=seconds,
                   **analyse(data["ts"], data["position"], data["velocity"]))
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=1))
    print(f"{name}: {seconds:.1f} s, period {summary['period']:.4f}, "
          f"energy ratio/cycle {summary['energy_ratio_per_cycle']:.4f}", flush=True)
    return data


LOCAL_VARIANTS = {
    "local_c0.5": dict(c=0.5),
    "local_c1": dict(c=1.0),
    "local_nodrag": dict(c=0.5, drag=False),
    "local_nosoftening": dict(softening=False),
    "local_bare": dict(drag=False, softening=False),
}
runs = {}
for name, options in LOCAL_VARIANTS.items():
    runs[name] = run(name, method="local", rtol=1e-10, atol=1e-12, **options)
for size in (L_MAIN,) + L_CONVERGENCE:
    runs[f"local_c0.5_L{size}"] = run(f"local_c0.5_L{size}", method="local", size=size, rtol=1e-10, atol=1e-12)
    runs[f"local_c1_L{size}"] = run(f"local_c1_L{size}", method="local", size=size, c=1.0, rtol=1e-10, atol=1e-12)
for size in L_CONVERGENCE + (L_MAIN,):  # smallest first: early numbers while the big one runs
    runs[f"full_L{size}"] = run(f"full_L{size}", method="full", size=size, dt=args.full_dt, solver=args.full_solver,
                                progress=True)

# %% [markdown]
# ## Summary: periods, decay per cycle, and differences from the full run

# %%
reference = runs[f"full_L{L_MAIN}"]


def rms_difference(data, other):
    """RMS of ``z - z_other`` at ``other``'s save times (``data`` linearly interpolated)."""
    ok, mine = np.isfinite(other["ts"]), np.isfinite(data["ts"])
    z = np.interp(other["ts"][ok], data["ts"][mine], data["position"][mine, 2])
    return float(np.sqrt(np.mean((z - other["position"][ok, 2]) ** 2)))


table = {}
for name, data in runs.items():
    stats = analyse(data["ts"], data["position"], data["velocity"])
    stats["rms_dz_vs_full"] = rms_difference(data, reference)
    table[name] = stats
full_stats = table[f"full_L{L_MAIN}"]
print(f"\n{'run':>22} {'period':>9} {'dP/P_full':>10} {'E ratio/cyc':>12} {'A ratio/cyc':>12} {'rms dz':>9}")
for name, stats in table.items():
    relative = stats["period"] / full_stats["period"] - 1.0
    print(f"{name:>22} {stats['period']:9.4f} {relative:10.2e} {stats['energy_ratio_per_cycle']:12.5f} "
          f"{stats['amplitude_ratio_per_cycle']:12.5f} {stats['rms_dz_vs_full']:9.2e}")
(OUT / "summary.json").write_text(json.dumps(dict(tau=TAU, L_main=L_MAIN, runs=table), indent=1))

# %% [markdown]
# ## The paper's figure: z(t) of the full and time-local runs

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
for name, style in [(f"full_L{L_MAIN}", "k-"), ("local_c0.5", "C0--"), ("local_c1", "C3:")]:
    data = runs[name]
    top.plot(data["ts"], data["position"][:, 2], style, lw=1, label=name)
    times, speeds = crossings(data["ts"], data["position"][:, 2], data["velocity"][:, 2])
    kinetic = SYSTEM.ion_kinetic_energy(np.stack([0 * speeds, 0 * speeds, speeds], axis=-1))
    bottom.plot(times, kinetic, style, marker=".", lw=1, label=name)
top.set_ylabel(r"$z$ ($l$)")
top.legend(loc="upper right", fontsize=8)
bottom.set_xlabel(r"$\tau$ (periods)")
bottom.set_ylabel(r"ion kinetic energy at $z_0$ ($\hbar\Omega$)")
figure.tight_layout()
figure.savefig(OUT / "fig6.png", dpi=120)
print(f"figure: {OUT / 'fig6.png'}")
