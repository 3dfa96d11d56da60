"""Kernel method (jaxion.kernel): kernel construction and integration cost, and the Fig. 6 run.

    python benchmarks/bench_kernel.py [--quick] [--construction-only]

* kernel construction (exact mode sum over the periodic L^3 grid as a Chebyshev expansion in D(q), 8 Fig.-6
  sites) versus L (16, 32, 48) and t1 (5, 10); the cost grows as L^3 sqrt(lambda_max) t1;
* the Fig.-6 kernel itself (dt = 1e-3, t1 = 30) at L = 32 and L = 100: wave vectors (after q -> -q),
  Chebyshev degree and seconds (compile included). The eigenvector route it replaced (commit 2a91e21)
  took 195 s at L = 32 (this route: 4 s) on the same 2 shared CPU cores;
* integration versus t1 with the doubling-block FFT history sum and with the direct O(n^2) sum
  (the number of steps grows, the kernel is precomputed, compile time reported separately);
* infinite-lattice kernel from an absorbing box (kernel.AbsorbingBoundary) versus box size and t1
  (8 Fig.-6 sites; the cost is the box's real-time impulse response, ~ box^3 t1);
* the paper's Fig. 6 setup (8 sites (0, 0, j), j = 0..7, spacing 2, Phi0 = 1, lambda = 1/2, start
  z = 3.5 alpha, speed 7.5, mu = (inf, inf, 1), k1 = 15, k2 = 5) to tau = 30 at L = 32 and with the
  infinite-lattice kernel (absorbing box, default boundary; exact until the echo time it reports),
  with a step-halving self-convergence check of the final state.

``--quick`` runs tiny sizes (L <= 12, tau <= 2) as a smoke test. Results: kernel.json (``kernel_quick.json``
with ``--quick``; ``--construction-only``: only the two construction parts, into kernel_construction.json or
kernel_construction_quick.json), into ``_common.results_dir()``: ``out/benchmarks/results/``, git-ignored.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_call, write_json  # noqa: E402

import jaxion  # noqa: E402,F401
from jaxion import kernel  # noqa: E402
from jaxion.experiments import fig6_setup  # noqa: E402

SETUP = fig6_setup()


def build_seconds(system, dt, t1, size, boundary="auto"):
    """Wall seconds of one kernel construction (no cache: built afresh; compile included, it is paid once per
    shape)."""
    start = time.perf_counter()
    k = kernel.memory_kernel(system.lattice, system.site_cells, dt, t1, size=size, boundary=boundary)
    jax.block_until_ready(k.values)
    return time.perf_counter() - start, k


def fig6_construction(system, sizes, dt, t1):
    """Uncached construction of the Fig.-6 kernel on periodic ``L^3`` lattices: wave vectors of the mode sum
    (after the q -> -q halving), Chebyshev interval and degree, wall seconds."""
    rows = []
    for size in sizes:
        seconds, _ = build_seconds(system, dt, t1, size)
        q, _ = kernel._half_rule(*kernel.brillouin_rule(system.lattice, size), size)
        bound = kernel.spectral_bound(system.lattice, q)
        rows.append({"size": size, "dt": dt, "t1": t1, "times": int(round(t1 / dt)) + 1, "wave_vectors": len(q),
                     "spectral_bound": bound, "degree": kernel.chebyshev_degree(bound, t1), "seconds": seconds})
        print(f"Fig. 6 kernel L={size} dt={dt} t1={t1}: {len(q)} wave vectors, degree {rows[-1]['degree']}, "
              f"{seconds:.2f} s", flush=True)
    return rows


def run(system, k, t1, dt, block):
    return kernel.simulate(system, SETUP.position, SETUP.velocity, t1, dt=dt, kernel=k, block=block, n_save=301)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--construction-only", action="store_true", help="only the kernel construction parts")
    args = parser.parse_args()
    quick = args.quick
    system = SETUP.system
    dt = 5e-3
    sizes = (8, 12) if quick else (16, 32, 48)
    horizons = (1.0, 2.0) if quick else (5.0, 10.0)
    repeats = 1 if quick else 3

    construction = []
    for size in sizes:
        for t1 in horizons:
            seconds, _ = build_seconds(system, dt, t1, size)
            construction.append({"size": size, "t1": t1, "dt": dt, "seconds": seconds})
            print(f"kernel L={size} t1={t1}: {seconds:.2f} s", flush=True)
    fig6_kernel = fig6_construction(system, (12,) if quick else (32, 100), 1e-3, 2.0 if quick else 30.0)
    if args.construction_only:
        name = "kernel_construction_quick" if quick else "kernel_construction"
        path = write_json(name, {"quick": quick, "construction": construction, "fig6_construction": fig6_kernel})
        print("wrote", path)
        return

    absorbing = []
    boxes = ((16, 3), (20, 5)) if quick else ((32, 10), (40, 14))
    for box, layer in boxes:
        for t1 in ((0.5,) if quick else (5.0,)):
            boundary = kernel.AbsorbingBoundary(box=box, layer=layer)
            seconds, _ = build_seconds(system, dt, t1, None, boundary)
            absorbing.append({"box": box, "layer": layer, "damping": boundary.damping, "t1": t1, "dt": dt,
                              "seconds": seconds})
            print(f"absorbing kernel box={box} layer={layer} t1={t1}: {seconds:.2f} s", flush=True)

    integration = []
    steps = (1.0, 2.0) if quick else (5.0, 10.0, 20.0, 30.0)
    _, k_long = build_seconds(system, dt, max(steps), sizes[0])
    for t1 in steps:
        for block in (64, None):
            timing = time_call(lambda: run(system, k_long, t1, dt, block).position, repeats)
            integration.append({"t1": t1, "steps": int(round(t1 / dt)), "block": block, **timing})
            print(f"integrate t1={t1} block={block}: {timing['median']:.3f} s (first call {timing['warmup']:.1f} s)",
                  flush=True)

    fig6 = {}
    tau = 2.0 if quick else 30.0
    size = sizes[1] if len(sizes) > 1 else sizes[0]
    boundary = kernel.AbsorbingBoundary(box=20, layer=5) if quick else kernel.AbsorbingBoundary()
    for label, kw in (("periodic", {"size": size}), ("infinite", {"size": None, "boundary": boundary})):
        seconds, k = build_seconds(system, dt, tau, kw["size"], kw.get("boundary", "auto"))
        timing = time_call(lambda: run(system, k, tau, dt, 64).position, repeats)
        traj = run(system, k, tau, dt, 64)
        entry = {"kernel_seconds": seconds, "integration": timing, "final_z": float(traj.position_final[2]),
                 "final_vz": float(traj.velocity_final[2]), "energy_drift": float(np.ptp(np.asarray(traj.energy))),
                 "ts": np.asarray(traj.ts).tolist(), "z": np.asarray(traj.position[:, 2]).tolist(),
                 "size": kw["size"]}
        if label == "infinite":
            entry["boundary"] = repr(boundary)
            entry["exact_until"] = boundary.exact_until(system.lattice, system.site_cells)
        else:
            _, k_half = build_seconds(system, dt / 2, tau, size)
            half = run(system, k_half, tau, dt / 2, 64)
            entry["step_halving_difference_z"] = float(np.max(np.abs(np.asarray(half.position - traj.position))))
        fig6[label] = entry
        print(f"Fig. 6 {label}: kernel {seconds:.2f} s, integration {timing['median']:.2f} s, "
              f"final z {entry['final_z']:.6f}", flush=True)

    path = write_json("kernel_quick" if quick else "kernel",
                      {"quick": quick, "construction": construction, "fig6_construction": fig6_kernel,
                       "absorbing": absorbing, "integration": integration, "fig6": fig6})
    print("wrote", path)


if __name__ == "__main__":
    main()
