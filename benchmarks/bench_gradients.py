"""Cost of gradients: value versus value-and-gradient, memory of gradients through trajectories,
and a vmap sweep of recoil matrices over many frameworks.

    python benchmarks/bench_gradients.py [--quick]

* recoil matrix (Eq. 23) of the paper's cubic lattice: value vs value-and-grad in (k1, k2);
* perturbative loss curve (Eq. 13, 8 speeds): value vs Jacobian in (k1, k2) (forward mode);
* time-local single pass (Eq. 26, fixed dt): value vs reverse-mode gradient in (phi0, width), and
  the compiled peak memory (``jax.jit(...).lower(...).compile().memory_analysis()``, cheap and
  deterministic) of the gradient for two step counts (3,000 and 30,000; ``--quick`` 300 and
  3,000): diffrax's ``RecursiveCheckpointAdjoint`` stores O(log n) checkpoints, so the temporary
  memory must not grow 10x with 10x the steps;
* full single pass (L = 32, ``--quick`` L = 8; symplectic Blanes-Moan solver): value vs gradient in
  (phi0, mu), and the peak resident memory (ru_maxrss, each in a fresh process) of the gradient for
  two step counts (300 and 3,000; ``--quick`` 100 and 400): the checkpointed adjoint must not store
  one lattice state (L^3 x 6 numbers, 1.5 MiB at L = 32) per step (3,000 steps: 4.5 GiB);
* vmap sweep of 10^4 frameworks (``--quick`` 10^3) for the recoil matrix on the sphere rule
  ``SWEEP_RULE``: time and frameworks per second.

Writes gradients.json (``gradients_quick.json`` with ``--quick``) into ``_common.results_dir()``:
``out/benchmarks/results/``, git-ignored.
"""

import argparse
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_call, write_json  # noqa: E402

import jaxion  # noqa: E402,F401  (float64)
from jaxion.dissipation import loss_perturbative  # noqa: E402
from jaxion.response import recoil_matrix  # noqa: E402
from jaxion.lattice import SimpleCubic  # noqa: E402
from jaxion.potentials import Gaussian  # noqa: E402
from jaxion.simulation import pass_geometry, simulate  # noqa: E402
from jaxion.system import System  # noqa: E402

SWEEP_RULE = (16, 32)  # sphere rule of the sweep (n_theta, n_phi): ~1e-4 relative for the paper's lattice
SPEEDS = jnp.geomspace(1.0, 30.0, 8)


def ratio(value, both):
    return {"value_s": value["median"], "value_and_grad_s": both["median"], "ratio": both["median"] / value["median"],
            "value_compile_s": value["warmup"], "grad_compile_s": both["warmup"]}


def bench_recoil(repeats):
    f = jax.jit(lambda p: recoil_matrix(SimpleCubic(k1=p[0], k2=p[1]))[2, 2])
    g = jax.jit(jax.value_and_grad(lambda p: recoil_matrix(SimpleCubic(k1=p[0], k2=p[1]))[2, 2]))
    p = jnp.array([15.0, 5.0])
    return ratio(time_call(lambda: f(p), repeats), time_call(lambda: g(p), repeats))


def bench_perturbative(repeats):
    def curve(p):
        return loss_perturbative(System(SimpleCubic(k1=p[0], k2=p[1]), Gaussian(0.01, 1.0)), SPEEDS, (0.5, 0.0))

    p = jnp.array([15.0, 5.0])
    f, jac = jax.jit(curve), jax.jit(jax.jacfwd(curve))
    return ratio(time_call(lambda: f(p), repeats), time_call(lambda: jac(p), repeats))


def local_pass(p, n_steps):
    """Time-local pass at speed 3 through one site, fixed step so that the run has ``n_steps`` steps."""
    system = System(SimpleCubic(), Gaussian(p[0], p[1]))
    position, stop_z = pass_geometry(system, jnp.array([0.4, 0.0]))
    velocity = jnp.array([0.0, 0.0, 3.0])
    t1 = 4.0
    trajectory = simulate(system, position, velocity, t1, method="local", stop_z=stop_z, dt=t1 / n_steps, size=4,
                          n_save=2)
    return system.ion_kinetic_energy(velocity) - system.ion_kinetic_energy(trajectory.velocity_final)


def memory(fn, *args):
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    if analysis is None:
        return None
    return {"temp_bytes": int(analysis.temp_size_in_bytes), "argument_bytes": int(analysis.argument_size_in_bytes),
            "output_bytes": int(analysis.output_size_in_bytes)}


def bench_local(repeats, step_counts):
    p = jnp.array([0.05, 0.5])
    out = {}
    for n in step_counts:
        f = jax.jit(lambda q, n=n: local_pass(q, n))
        g = jax.jit(jax.value_and_grad(lambda q, n=n: local_pass(q, n)))
        out[str(n)] = {**ratio(time_call(lambda: f(p), repeats), time_call(lambda: g(p), repeats)),
                       "grad_memory": memory(jax.grad(lambda q, n=n: local_pass(q, n)), p),
                       "value_memory": memory(lambda q, n=n: local_pass(q, n), p)}
    return out


def full_pass(p, size, n_steps):
    system = System(SimpleCubic(), Gaussian(p[0], 0.5), mass=jnp.stack([jnp.inf, jnp.inf, p[1]]))
    position, stop_z = pass_geometry(system, jnp.array([0.4, 0.0]))
    velocity = jnp.array([0.0, 0.0, 3.0])
    t1 = 3.0
    trajectory = simulate(system, position, velocity, t1, method="full", stop_z=stop_z, size=size, dt=t1 / n_steps,
                          solver="symplectic", n_save=2)
    return system.ion_kinetic_energy(velocity) - system.ion_kinetic_energy(trajectory.velocity_final)


def bench_full(repeats, size, n_steps):
    p = jnp.array([0.05, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = time_call(lambda: full_pass(p, size, n_steps), repeats)
        both = time_call(lambda: jax.value_and_grad(full_pass)(p, size, n_steps), repeats)
    return ratio(value, both)


def full_gradient_rss(size, n_steps):
    """Peak resident memory (MiB) of one full-pass gradient, measured in a fresh process."""
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r});"
            "import warnings; warnings.simplefilter('ignore');"
            "import bench_gradients as b, jax, jax.numpy as jnp, resource;"
            f"jax.block_until_ready(jax.grad(b.full_pass)(jnp.array([0.05, 1.0]), {size}, {n_steps}));"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def bench_sweep(n):
    rng = np.random.default_rng(0)
    k1 = jnp.asarray(rng.uniform(5.0, 30.0, n))
    k2 = jnp.asarray(rng.uniform(1.0, 10.0, n))
    sweep = jax.jit(jax.vmap(lambda a, b: recoil_matrix(SimpleCubic(k1=a, k2=b), *SWEEP_RULE)))
    timing = time_call(lambda: sweep(k1, k2), 2)
    return {"frameworks": n, "sphere_rule": SWEEP_RULE, **timing, "frameworks_per_s": n / timing["median"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    steps = (300, 3000) if args.quick else (3000, 30000)
    size = 8 if args.quick else 32
    full_steps = (100, 400) if args.quick else (300, 3000)  # dt = 3 / n below Blanes-Moan's stability bound
    results = {}
    t = time.perf_counter()
    results["recoil_matrix"] = bench_recoil(repeats)
    print("recoil matrix", results["recoil_matrix"], flush=True)
    results["perturbative_curve"] = bench_perturbative(repeats)
    print("perturbative curve", results["perturbative_curve"], flush=True)
    results["local_pass"] = bench_local(repeats, steps)
    print("local pass", results["local_pass"], flush=True)
    results["full_pass"] = {"size": size, "n_steps": full_steps[0], **bench_full(repeats, size, full_steps[0])}
    print("full pass", results["full_pass"], flush=True)
    results["full_gradient_maxrss_mib"] = {str(n): full_gradient_rss(size, n) for n in full_steps}
    results["full_state_mib_per_step"] = size**3 * 6 * 8 / 2**20
    print("full gradient ru_maxrss (MiB)", results["full_gradient_maxrss_mib"], flush=True)
    results["recoil_sweep"] = bench_sweep(1000 if args.quick else 10000)
    print("recoil sweep", results["recoil_sweep"], flush=True)
    results["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["total_s"] = time.perf_counter() - t
    print("written", write_json("gradients_quick" if args.quick else "gradients", {"quick": args.quick, **results}))


if __name__ == "__main__":
    main()
