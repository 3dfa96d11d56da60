"""Time-local method (jaxion.local, Eq. 26): the paper's Fig. 6 run.

    python benchmarks/bench_local.py [--quick]

Writes local.json (``local_quick.json`` with ``--quick``) into ``_common.results_dir()``:
``out/benchmarks/results/``, git-ignored.

Eight interacting masses at (0, 0, j alpha), j = 0..7, on the paper's simple cubic framework
(k1 = 15, k2 = 5, alpha = 2), Gaussian Phi0 = 1, lambda = 1/2, ion from z = 3.5 alpha with speed
7.5 along z (mu = (inf, inf, 1)), tau = 30, drag and softening (c = 1/2, infinite lattice) on.
Reported separately:

* the precomputation of the ingredients (Green's function G of the 8 sites by Brillouin-zone
  quadrature, recoil matrix M), done once per system;
* the compilation of the solve (first call minus a timed call);
* the solve after compilation (wall time, and process time, which other processes sharing the
  cores inflate less), adaptive Tsit5 at rtol = 1e-8 (target < 0.05 s on 2 CPU cores)
  and the paper's fixed dt = 1e-3 (30,000 steps, target < 0.3 s), plus fixed dt = 1e-2 (the
  time-local step the paper quotes 9 s for on one laptop core).

Each configuration runs twice, in separate processes: with XLA:CPU's defaults, and with
``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false``. The ion's state is six
numbers; the concurrency-optimised scheduler hands independent small operations of each step to
other threads, and on this scale the hand-offs cost more than they save (the flag is read when the
XLA:CPU client starts, so it cannot be set per compiled function: users set it in the environment).

``--quick`` runs the same sizes with fewer repeats (the run is cheap).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_call, write_json  # noqa: E402

import jaxion  # noqa: E402,F401
from jaxion import local  # noqa: E402
from jaxion.experiments import fig6_setup  # noqa: E402

TAU = 30.0
RUNS = [
    dict(name="adaptive rtol=1e-8", dt=None, rtol=1e-8, atol=1e-10, target_s=0.05),
    dict(name="fixed dt=1e-3", dt=1e-3, rtol=1e-8, atol=1e-10, target_s=0.3),
    dict(name="fixed dt=1e-2", dt=1e-2, rtol=1e-8, atol=1e-10, target_s=None),
]


SERIAL_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def measure(repeats):
    """Precompute, then compile and time every configuration in :data:`RUNS` in this process."""

    began = time.perf_counter()
    setup = fig6_setup()
    dynamics = local.LocalDynamics(setup.system)
    jax.block_until_ready(dynamics)
    precompute = time.perf_counter() - began

    results, reference = [], None
    for run in RUNS:

        def solve(run=run):
            return jax.block_until_ready(local.integrate(dynamics, setup.position, setup.velocity, TAU, dt=run["dt"],
                                                         rtol=run["rtol"], atol=run["atol"], n_save=301))

        began = time.perf_counter()
        trajectory = solve()
        first = time.perf_counter() - began
        timing = time_call(solve, repeats)
        cpu = []  # process time: robust to other processes sharing the cores, unlike wall time
        for _ in range(repeats):
            began = time.process_time()
            solve()
            cpu.append(time.process_time() - began)
        if reference is None:
            reference = trajectory
        deviation = float(np.max(np.abs(np.asarray(trajectory.position[:, 2] - reference.position[:, 2]))))
        results.append(dict(
            name=run["name"],
            solve=timing,
            solve_cpu_seconds=min(cpu),
            compile_seconds=max(first - timing["median"], 0.0),
            target_s=run["target_s"],
            max_z_deviation_from_adaptive=deviation,
            energy_start=float(trajectory.energy[0]),
            energy_end=float(trajectory.energy_final),
        ))
        print(f"{run['name']:>20}: solve {timing['median'] * 1e3:8.2f} ms (min {timing['min'] * 1e3:.2f}, "
              f"cpu {min(cpu) * 1e3:.2f}), "
              f"compile {results[-1]['compile_seconds']:.2f} s, max |dz| vs adaptive {deviation:.2e}", flush=True)

    print(f"precompute (G, M): {precompute:.2f} s")
    return dict(xla_flags=os.environ.get("XLA_FLAGS", ""), precompute_seconds=precompute, runs=results)


def measure_in_subprocess(repeats, xla_flags):
    """:func:`measure` in a fresh process with ``XLA_FLAGS`` extended by ``xla_flags``."""
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip())
    done = subprocess.run([sys.executable, __file__, "--measure-only", "--repeats", str(repeats)], env=env,
                          capture_output=True, text=True, check=True)
    sys.stdout.write(done.stdout.split("@@JSON@@")[0])
    return json.loads(done.stdout.split("@@JSON@@")[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 20)
    if args.measure_only:  # child process: print the measurement as JSON after a marker
        print("@@JSON@@" + json.dumps(measure(repeats), default=float))
        return

    print("XLA:CPU defaults")
    default = measure_in_subprocess(repeats, "")
    print(f"XLA_FLAGS={SERIAL_FLAG}")
    serial = measure_in_subprocess(repeats, SERIAL_FLAG)
    payload = dict(
        quick=args.quick,
        parameters=dict(tau=TAU, sites=8, phi0=1.0, width=0.5, start_z=7.0, speed=7.5, c=0.5, green="infinite",
                        paper_local_seconds_one_core=9.0, paper_full_seconds_one_core=4 * 3600.0),
        precompute_seconds=default["precompute_seconds"],
        runs=default["runs"],
        serial_scheduler=serial,
    )
    write_json("local_quick" if args.quick else "local", payload)


if __name__ == "__main__":
    main()
