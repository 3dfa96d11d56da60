"""Full thermal description (jaxion.thermal.full, physics.md 5.4): cost per step and accuracy.

    python benchmarks/bench_thermal_full.py [--quick]

Writes thermal_full.json (``thermal_full_quick.json`` with ``--quick``) into ``_common.results_dir()``:
``out/benchmarks/results/``, git-ignored.

* Time per velocity-Verlet step of the follow-up paper's model (Yukawa u0 = 4000 meV Å, 6 Å
  smooth cut-off, 88-site stencil) on a 300 K classical thermal lattice, dt = 5 fs, saving every
  100 steps, at L = 10 and 20 (and 30 without ``--quick``): ``run_full_thermal`` (diffrax's
  ``VelocityVerlet`` per save interval) against a bare ``lax.scan`` of the same step (the
  diffrax overhead), and a vmapped batch of 4 states at L = 10 (time per trajectory-step).
* Energy drift: largest ``|E(t) - E(0)| / |E(0)|`` over 2 ps at dt = 5 fs, L = 10.
* Accuracy at T = 0 (8 corner sites, Gaussian 1000 meV / 1.2 Å, framework at rest, L = 6):
  largest ion-position error over 1 ps at dt = 10 and 5 fs against the dimensionless full-lattice
  method (jaxion.simulate, Blanes-Moan 4th order at 0.5 fs) converted to Å; and the same-integrator
  difference (jaxion.simulate with solver="verlet" at the same step), which is rounding.
"""

import argparse
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bare_steps, time_call, write_json  # noqa: E402

import jaxion  # noqa: E402
from jaxion import units  # noqa: E402
from jaxion.lattice import SimpleCubic  # noqa: E402
from jaxion.potentials import Gaussian  # noqa: E402
from jaxion.solvers import VelocityVerlet  # noqa: E402
from jaxion.system import System  # noqa: E402
from jaxion.thermal.full import FullThermalDynamics, finite_size, run_full_thermal  # noqa: E402
from jaxion.thermal.model import MEV, IonInFramework, follow_up_model  # noqa: E402
from jaxion.thermal.modes import thermal_modes  # noqa: E402
from jaxion.thermal.neighbours import NeighbourSites  # noqa: E402

DT = 0.005
SAVE_EVERY = 100


def thermal_state(dynamics, seed=0, temperature=300.0):
    modes = thermal_modes(dynamics.model.lattice, dynamics.size, temperature, jax.random.key(seed))
    return dynamics.thermal_state(jnp.full(3, 1.5), jnp.array([3.0, -4.0, 2.0]), modes)


def microseconds(timing, count):
    """A :func:`_common.time_call` timing per one of ``count`` steps, in microseconds (``unit`` for the report)."""
    return dict({k: v / count * 1e6 for k, v in timing.items() if k != "warmup"}, unit="µs")


def step_costs(sizes, n_steps, repeats):
    out = {}
    for size in sizes:
        dynamics = FullThermalDynamics(follow_up_model(4000.0, size=size))
        state = thermal_state(dynamics)
        t1 = n_steps * DT
        diffrax_time = time_call(
            lambda: run_full_thermal(dynamics, state, t1, DT, save_every=SAVE_EVERY).energy, repeats
        )
        bare = bare_steps(dynamics.terms(), VelocityVerlet(), DT, n_steps)  # the same steps without diffrax
        scan_time = time_call(lambda: bare(state), repeats)
        entry = {
            "sites": size**3,
            "steps": n_steps,
            "us_per_step_run_full_thermal": microseconds(diffrax_time, n_steps),
            "us_per_step_bare_scan": microseconds(scan_time, n_steps),
            "compile_and_first_run_s": diffrax_time["warmup"],
            "finite_size": finite_size(dynamics)._asdict(),
        }
        out[f"L{size}"] = entry
        print(f"L = {size}: run_full_thermal {entry['us_per_step_run_full_thermal']['median']:.0f} us/step, "
              f"bare scan {entry['us_per_step_bare_scan']['median']:.0f} us/step (medians)", flush=True)
    return out


def batch_cost(size, batch, n_steps, repeats):
    dynamics = FullThermalDynamics(follow_up_model(4000.0, size=size))
    states = [thermal_state(dynamics, seed) for seed in range(batch)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    run = jax.jit(jax.vmap(lambda s: run_full_thermal(dynamics, s, n_steps * DT, DT, save_every=SAVE_EVERY).energy))
    timing = time_call(lambda: run(stacked), repeats)
    per = microseconds(timing, n_steps * batch)
    print(f"L = {size}, vmapped batch of {batch}: {per['median']:.0f} us per trajectory-step", flush=True)
    return {"size": size, "batch": batch, "us_per_trajectory_step": per}


def energy_drift(size, duration):
    dynamics = FullThermalDynamics(follow_up_model(4000.0, size=size))
    run = run_full_thermal(dynamics, thermal_state(dynamics), duration, DT, save_every=10)
    relative = float(run.energy_drift / abs(run.energy[0]))
    print(f"energy drift over {duration} ps at dt = {DT} ps, L = {size}: {relative:.3g} of |E(0)|", flush=True)
    return {"size": size, "duration_ps": duration, "dt_ps": DT, "relative_drift": relative,
            "energy_meV": float(run.energy[0])}


def zero_temperature_accuracy():
    size, spacing, k1, k2, mass, ion_mass, phi0, width = 6, 3.0, 520.0, 170.0, 3.5, 0.7, 1000.0, 1.2
    lattice = SimpleCubic(k1=k1, k2=k2, spacing=spacing, mass=mass)
    model = IonInFramework(lattice, Gaussian(phi0, width), ion_mass,
                           neighbours=NeighbourSites.cell_corners(spacing, size=size))
    dynamics = FullThermalDynamics(model)
    position, velocity, t1 = jnp.array([1.6, 1.45, 1.58]), jnp.array([2.0, 1.0, -1.5]), 1.0
    state = dynamics.initial_state(position, velocity)
    unit = units.UnitSystem(mass * MEV, k1 / 1000.0)
    corners = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    system = System(SimpleCubic(k1=1.0, k2=k2 / k1, spacing=spacing / unit.length, mass=1.0),
                    Gaussian(unit.from_mev(phi0), width / unit.length), sites=corners, mass=ion_mass / mass)

    def reference(dt, solver):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trajectory = jaxion.simulate(system, position / unit.length, unit.from_angstrom_per_ps(velocity),
                                         float(unit.from_ps(t1)), method="full", size=size,
                                         dt=float(unit.from_ps(dt)), solver=solver, n_save=11)
        return np.asarray(trajectory.position) * float(unit.length)

    accurate = reference(0.0005, "symplectic")
    out = {}
    for dt in (0.01, 0.005):
        run = run_full_thermal(dynamics, state, t1, dt, save_every=int(round(0.1 / dt)))
        positions = np.asarray(run.positions)
        out[f"dt_{dt}"] = {
            "error_vs_4th_order_A": float(np.max(np.abs(positions - accurate))),
            "difference_vs_same_verlet_A": float(np.max(np.abs(positions - reference(dt, "verlet")))),
            "relative_energy_drift": float(run.energy_drift / abs(run.energy[0])),
        }
        print(f"T = 0, dt = {dt} ps: {out[f'dt_{dt}']}", flush=True)
    out["error_ratio"] = out["dt_0.01"]["error_vs_4th_order_A"] / out["dt_0.005"]["error_vs_4th_order_A"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats, L = 10 and 20 only")
    args = parser.parse_args(argv)
    sizes = (10, 20) if args.quick else (10, 20, 30)
    n_steps, repeats = (500, 3) if args.quick else (2000, 5)
    payload = {
        "quick": args.quick,
        "dt_ps": DT,
        "save_every": SAVE_EVERY,
        "step_cost": step_costs(sizes, n_steps, repeats),
        "vmapped_batch": batch_cost(10, 4, n_steps, repeats),
        "energy_drift": energy_drift(10, 0.5 if args.quick else 2.0),
        "zero_temperature_accuracy": zero_temperature_accuracy(),
    }
    print("wrote", write_json("thermal_full_quick" if args.quick else "thermal_full", payload))


if __name__ == "__main__":
    main()
