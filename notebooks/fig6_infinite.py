# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Fig. 6 on the infinite lattice: the trapped ion with an absorbing-boundary memory kernel
#
# The paper's Fig. 6 setup (8 sites (0, 0, j), j = 0..7, SimpleCubic(15, 5, 2), Gaussian Phi0 = 1,
# lambda = 1/2, ion mass (inf, inf, 1) starting at z = 3.5 alpha = 7 with speed 7.5) run with
# ``method="kernel"`` and the **infinite-lattice** kernel to tau = 30. A Brillouin-zone quadrature
# converged to tau = 30 would need ~1e10 wave vectors and an image-free periodic lattice L ~ 930,
# so the kernel is the impulse response of an L^3 box with a damping layer
# (``jaxion.kernel.AbsorbingBoundary``): exact until echoes return from the layer, then in error
# by the layer's residual reflection, estimated here by a second box/layer.
#
# Compared: the time-local method (``method="local"``), exact finite-L kernels (L = 32, 48, 64 and the
# paper's L = 100) and the full L = 100 run of ``fig6_trapped.py`` when its results exist.
#
#     python notebooks/fig6_infinite.py            # tau = 30 (~12 minutes on 2 cores)
#     python notebooks/fig6_infinite.py --quick    # tau = 2, small boxes (< 40 s)
#
# The setup is ``jaxion.experiments.fig6_setup()`` and the analysis ``jaxion.trapped.cycle_analysis``
# (as in ``fig6_trapped.py``). Writes ``kernel_infinite.npz`` (and ``kernel_infinite_check.npz``,
# ``local_infinite.npz``, ``kernel_L<size>.npz``: ts, position, velocity, energy, wall_seconds),
# ``fig6_infinite.json`` and ``fig6_infinite.png`` into ``--out`` (default ``out/notebooks/fig6/``,
# git-ignored, the folder ``fig6_trapped.py`` writes its full runs to; ``quick/`` inside it with
# ``--quick``; ``--out notebooks/results/fig6`` refreshes the committed results).

# %%
import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxion import experiments, kernel, trapped

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
parser = argparse.ArgumentParser(description="Fig. 6 with the infinite-lattice kernel")
parser.add_argument("--quick", action="store_true", help="tau = 2 and small boxes (smoke run)")
parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "notebooks" / "fig6",
                    help="results folder (default out/notebooks/fig6, git-ignored)")
args, _ = parser.parse_known_args(sys.argv[1:] if __name__ == "__main__" else [])

QUICK = args.quick
TAU = 2.0 if QUICK else 30.0
DT = 5e-3
N_SAVE = int(round(TAU / DT)) + 1
L_FINITE = 12 if QUICK else 100  # the paper's full run
FINITE_SIZES = (L_FINITE,) if QUICK else (32, 48, 64, L_FINITE)
# production boundary and a different one for the error estimate (the two differ only by echoes)
BOUNDARY = kernel.AbsorbingBoundary(box=20, layer=5) if QUICK else kernel.AbsorbingBoundary()
CHECK = kernel.AbsorbingBoundary(box=16, layer=3) if QUICK else kernel.AbsorbingBoundary(box=48, layer=18)
OUT = args.out / ("quick" if QUICK else "")
OUT.mkdir(parents=True, exist_ok=True)

SETUP = experiments.fig6_setup()  # z0 = 3.5 alpha = 7, v0 = 7.5
SYSTEM = SETUP.system
CELLS = SYSTEM.site_cells

# %% [markdown]
# ## Kernels: infinite (two absorbing boxes) and finite L

# %%


def describe(boundary):
    return dict(box=boundary.box, layer=boundary.layer, damping=boundary.damping, tol=boundary.tol)


def timed(build):
    began = time.perf_counter()
    value = jax.block_until_ready(build())
    return value, time.perf_counter() - began


k_inf, seconds_inf = timed(lambda: kernel.memory_kernel(SYSTEM.lattice, CELLS, DT, TAU, boundary=BOUNDARY))
print(f"infinite kernel {describe(BOUNDARY)}: {seconds_inf:.1f} s", flush=True)
k_chk, seconds_chk = timed(lambda: kernel.memory_kernel(SYSTEM.lattice, CELLS, DT, TAU, boundary=CHECK))
print(f"check kernel {describe(CHECK)}: {seconds_chk:.1f} s", flush=True)
values, check = np.asarray(k_inf.values[:, 0]), np.asarray(k_chk.values[:, 0])
peak = float(np.max(np.abs(values)))
difference = np.max(np.abs(values - check).reshape(len(values), -1), axis=1) / peak
exact_until = min(b.exact_until(SYSTEM.lattice, CELLS) for b in (BOUNDARY, CHECK))
print(f"max|K_1 - K_2| / max|K| = {difference.max():.2e} (exact until ~{exact_until:.2f}; tail "
      f"[{TAU / 2:g}, {TAU:g}]: {difference[len(difference) // 2:].max():.2e})", flush=True)
# spectrum of the difference: which frequencies the layer reflects
spectrum = np.abs(np.fft.rfft(values - check, axis=0)).reshape(len(np.fft.rfftfreq(len(values))), -1).max(1)
frequencies = np.fft.rfftfreq(len(values), DT)
bands = [(0.0, 1.0), (1.0, 3.0), (3.0, 6.0), (6.0, 11.0)]
reflection_bands = {f"{a:g}-{b:g}": float(spectrum[(frequencies >= a) & (frequencies < b)].max()
                                           / np.abs(np.fft.rfft(values, axis=0)).max()) for a, b in bands}
print("difference spectrum / kernel spectrum peak by band (omega in 1/period):", reflection_bands, flush=True)

# exact finite-L kernels (the finite-size effect): the Chebyshev mode sum costs seconds even at L = 100
finite, finite_seconds = {}, {}
for size in FINITE_SIZES:
    finite[size], finite_seconds[size] = timed(lambda: kernel.memory_kernel(SYSTEM.lattice, CELLS, DT, TAU, size=size))
    print(f"finite L={size} kernel: {finite_seconds[size]:.1f} s", flush=True)

# %% [markdown]
# ## Runs

# %%


def run(name, **options):
    _, data = trapped.timed_run(SYSTEM, SETUP.position, SETUP.velocity, TAU, n_save=N_SAVE, **options)
    np.savez(OUT / f"{name}.npz", **data)
    print(f"{name}: {data['wall_seconds']:.1f} s", flush=True)
    return data


runs = {
    "kernel_infinite": run("kernel_infinite", method="kernel", dt=DT, kernel=k_inf),
    "kernel_infinite_check": run("kernel_infinite_check", method="kernel", dt=DT, kernel=k_chk),
    "local_infinite": run("local_infinite", method="local", rtol=1e-8 if QUICK else 1e-10,
                          atol=1e-10 if QUICK else 1e-12),
}
for size, k_fin in finite.items():
    runs[f"kernel_L{size}"] = run(f"kernel_L{size}", method="kernel", dt=DT, kernel=k_fin)
full = OUT / f"full_L{L_FINITE}.npz"  # from fig6_trapped.py, if it has been run
if full.exists():
    runs[f"full_L{L_FINITE}"] = dict(np.load(full))

# %% [markdown]
# ## Summary

# %%
table = {name: trapped.cycle_analysis(data["ts"], data["position"], data["velocity"], SETUP.center)
         for name, data in runs.items()}
trajectory_error = trapped.z_difference(runs["kernel_infinite_check"], runs["kernel_infinite"])["max"]
for name, stats in table.items():
    print(f"{name:>24}: period {stats['period']:.4f}, energy ratio per cycle {stats['energy_ratio_per_cycle']:.5f}, "
          f"cycles {stats['cycles']}")
print(f"max |z_1 - z_2| between the two absorbing boxes: {trajectory_error:.2e}")


# the exact kernel against the whole-lattice run of the same finite lattice (fig6_trapped.py), where both exist
kernel_vs_full = {size: trapped.z_difference(runs[f"kernel_L{size}"], dict(np.load(OUT / f"full_L{size}.npz")))["max"]
                  for size in finite if (OUT / f"full_L{size}.npz").exists()}
for size, error in kernel_vs_full.items():
    print(f"L={size}: max |z_kernel - z_full| = {error:.2e}")
summary = dict(
    tau=TAU, dt=DT, boundary=describe(BOUNDARY), check=describe(CHECK), kernel_seconds=seconds_inf,
    check_kernel_seconds=seconds_chk, kernel_peak=peak, kernel_difference_max=float(difference.max()),
    kernel_difference_tail=float(difference[len(difference) // 2:].max()), exact_until=exact_until,
    reflection_bands=reflection_bands, finite_kernel_seconds=finite_seconds,
    trajectory_difference_z=trajectory_error, kernel_vs_full_max_dz=kernel_vs_full,
    runs={name: stats | {"wall_seconds": float(runs[name].get("wall_seconds", np.nan))}
          for name, stats in table.items()},
)
(OUT / "fig6_infinite.json").write_text(json.dumps(summary, indent=1))

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
styles = {"kernel_infinite": "k-", "local_infinite": "C0--", f"full_L{L_FINITE}": "C2-."}
styles |= {f"kernel_L{size}": f"C{3 + i}:" for i, size in enumerate(FINITE_SIZES)}
for name, style in styles.items():
    if name in runs:
        data = runs[name]
        top.plot(data["ts"], data["position"][:, 2], style, lw=1, label=name)
        bottom.plot(data["ts"], data["velocity"][:, 2], style, lw=1, label=name)
top.set_ylabel(r"$z$ ($l$)")
bottom.set_ylabel(r"$v_z$ ($l$ per period)")
bottom.set_xlabel(r"$\tau$ (periods)")
top.legend(loc="upper right", fontsize=8)
figure.tight_layout()
figure.savefig(OUT / "fig6_infinite.png", dpi=120)
print(f"figure: {OUT / 'fig6_infinite.png'}")
