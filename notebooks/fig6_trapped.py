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
# The setup is ``jaxion.experiments.fig6_setup()`` and the analysis ``jaxion.trapped.cycle_analysis``
# (the same as ``jaxion figure 6`` and ``fig6_infinite.py``). Every run writes ``<name>.npz`` (ts,
# position, velocity, energy, wall_seconds) and ``<name>.json`` (its analysis and wall time) into
# ``--out`` (default ``out/notebooks/fig6/``, git-ignored; ``quick/`` inside it with ``--quick``;
# ``--out notebooks/results/fig6`` refreshes the committed results) as soon as it finishes, and is
# skipped when its file exists (``--force`` recomputes), so an interrupted session resumes where it
# stopped. Full runs show a progress bar.

# %%
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxion import experiments, trapped

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
parser = argparse.ArgumentParser(description="Fig. 6: trapped ion, full lattice vs time-local")
parser.add_argument("--quick", action="store_true", help="L = 10 and tau = 2 only (smoke run)")
parser.add_argument("--force", action="store_true", help="recompute runs whose results exist")
parser.add_argument("--full-solver", default="symplectic", help="solver of the full runs (default Blanes-Moan)")
parser.add_argument("--full-dt", type=float, default=0.01, help="time step of the full runs")
parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "notebooks" / "fig6",
                    help="results folder (default out/notebooks/fig6, git-ignored)")
args, _ = parser.parse_known_args(sys.argv[1:] if __name__ == "__main__" else [])

QUICK = args.quick
TAU = 2.0 if QUICK else 30.0
L_MAIN = 10 if QUICK else 100
L_CONVERGENCE = () if QUICK else (24, 32, 48, 64)
SAVE_EVERY = args.full_dt  # on the full runs' step grid; a cycle lasts ~0.8 periods
N_SAVE = int(round(TAU / SAVE_EVERY)) + 1
OUT = args.out / ("quick" if QUICK else "")
OUT.mkdir(parents=True, exist_ok=True)

SETUP = experiments.fig6_setup()  # z0 = 3.5 alpha = 7, v0 = 7.5
SYSTEM = SETUP.system


def analyse(data):
    """Period, energy and amplitude decay per cycle (see the introduction)."""
    return trapped.cycle_analysis(data["ts"], data["position"], data["velocity"], SETUP.center)


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
    _, data = trapped.timed_run(SYSTEM, SETUP.position, SETUP.velocity, TAU, n_save=N_SAVE, **options)
    np.savez(path, **data)
    summary = dict(name=name, options={k: v for k, v in options.items() if k != "progress"},
                   wall_seconds=data["wall_seconds"], **analyse(data))
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=1))
    print(f"{name}: {data['wall_seconds']:.1f} s, period {summary['period']:.4f}, "
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
table = {name: dict(analyse(data), rms_dz_vs_full=trapped.z_difference(data, reference)["rms"])
         for name, data in runs.items()}
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
    times, _ = trapped.upward_crossings(data["ts"], data["position"][:, 2], data["velocity"][:, 2], SETUP.center)
    bottom.plot(times, table[name]["kinetic_at_crossings"], style, marker=".", lw=1, label=name)
top.set_ylabel(r"$z$ ($l$)")
top.legend(loc="upper right", fontsize=8)
bottom.set_xlabel(r"$\tau$ (periods)")
bottom.set_ylabel(r"ion kinetic energy at $z_0$ ($\hbar\Omega$)")
figure.tight_layout()
figure.savefig(OUT / "fig6.png", dpi=120)
print(f"figure: {OUT / 'fig6.png'}")
