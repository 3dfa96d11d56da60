"""Benchmark: a 50-speed perturbative loss curve (Eq. 13, simple cubic, one site) and the recoil
matrix (Eq. 23). Compile time is measured separately from run time.

    python benchmarks/bench_perturbative.py           # full: 50 speeds, 1..80
    python benchmarks/bench_perturbative.py --quick   # smoke run: 5 speeds, coarse zone rule

Writes perturbative.json (``perturbative_quick.json`` with ``--quick``) into ``--out-dir`` (default
``_common.results_dir()``: ``out/benchmarks/results/``, git-ignored).
"""

import argparse

import jax.numpy as jnp
import numpy as np

import jaxion as jx
from jaxion.dissipation import loss_low_speed, loss_perturbative
from jaxion.response import recoil_matrix
from jaxion.potentials import Gaussian
from jaxion.system import System

from _common import compile_time, time_call, write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--out-dir", default=None, help="folder of the JSON (default: _common.results_dir())")
    args = parser.parse_args()

    n_speeds, repeats, rule = (5, 1, dict(n_radial=16, n_face=8)) if args.quick else (50, 3, {})
    lattice = jx.SimpleCubic(k1=15.0, k2=5.0, spacing=2.0)
    system = System(lattice, Gaussian(0.01, 1.0), [(0, 0, 0)])
    start = jnp.array([0.0, 1.0])
    speeds = jnp.asarray(np.logspace(0.0, np.log10(80.0), n_speeds))

    curve = lambda v: loss_perturbative(system, v, start, **rule)
    curve_compile, compiled_curve = compile_time(curve, speeds)
    curve_times = time_call(lambda: compiled_curve(speeds), repeats)
    losses = np.asarray(compiled_curve(speeds))

    recoil_compile, compiled_recoil = compile_time(recoil_matrix, lattice)
    recoil_times = time_call(lambda: compiled_recoil(lattice), repeats)
    recoil = np.asarray(compiled_recoil(lattice))

    payload = {
        "benchmark": "perturbative",
        "quick": args.quick,
        "system": "SimpleCubic(k1=15, k2=5, spacing=2), Gaussian(phi0=0.01, width=1), one site, start=(0, 1)",
        "loss_curve": {
            "n_speeds": n_speeds,
            "zone_rule": rule or "default",
            "compile_s": curve_compile,
            "run_s": curve_times,
            "speeds": np.asarray(speeds).tolist(),
            "loss": losses.tolist(),
            "loss_low_speed_at_first_speed": float(loss_low_speed(system, speeds[0], start)),
        },
        "recoil_matrix": {"compile_s": recoil_compile, "run_s": recoil_times, "m0": float(recoil[0, 0])},
    }
    path = write_json("perturbative_quick" if args.quick else "perturbative", payload, args.out_dir)
    print(f"loss curve ({n_speeds} speeds): compile {curve_compile:.2f} s, run median {curve_times['median']:.3f} s")
    recoil_ms = recoil_times["median"] * 1e3
    print(f"recoil matrix: compile {recoil_compile:.2f} s, run median {recoil_ms:.2f} ms, m0 = {recoil[0, 0]:.6e}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
