"""Langevin integrators (physics.md 5.2): the BAOAB splitting with an exact Ornstein-Uhlenbeck
step against diffrax's generic SDE solvers, accuracy and cost.

    python benchmarks/bench_langevin.py [--quick] [--out [DIR]]

Prints the tables and writes ``langevin.json`` (``langevin_quick.json`` with ``--quick``) into
``_common.results_dir()`` (``out/benchmarks/results/``, git-ignored), or with ``--out DIR`` into
``DIR/benchmarks/results/`` (``--out .`` refreshes the committed results).

Accuracy. An isotropic anharmonic well ``U = k r^2 / 2 + b r^4 / 4`` (k = 50 meV/Å^2, b = 20
meV/Å^4; well frequency 8.5 rad/ps at the bottom, ~12 at r = 1 Å) with an anisotropic,
position-dependent friction ``Gamma(R) = H(R) L H(R)`` (H the Hessian of an anisotropic quartic
cage; damping rates ~0.8 to ~25 /ps over the bulk of the sampled region, ~100 in the tails),
T = 300 K, ion mass 0.7 meV ps^2/Å^2. Its exact Boltzmann averages are ``<M V_a^2> = k_B T`` and
``<U>`` by radial quadrature. 4 x 256 trajectories (``--quick``: 2 x 64) of 40 ps (10 ps) from exact
Boltzmann samples, 2 ps discarded, saved every 0.04 ps; the error of ``<M V^2> / 3 k_B T`` and of
``<U> / <U>_exact`` against dt, with standard errors from the trajectories as blocks, and each
solver's errors minus the splitting's on the same trajectories (same starts and Brownian increments,
so the shared sampling noise cancels in the paired difference). For the splitting also the
kinetic temperature of its midpoint velocities (``LangevinRun.midpoint_kinetic_temperature``),
which BAOAB samples without the ``(w h)^2 / 4`` deficit of its full-step velocities.

Cost. Time per step (process time after compilation) of each solver on that model (per ion-step
in the batch of 256) and on the follow-up model (U0 = 4000 meV Å Yukawa cage, default 6 Å
cut-off, 88 sites; rigid landscape): one trajectory, and a vmapped batch of 32 (full run only).

Solvers: "splitting" (:class:`jaxion.thermal.langevin.LangevinSplitting`), diffrax's ``EulerHeun``
(which here *is* Euler-Maruyama: the noise depends on R only and its predictor moves only V),
``Heun`` (a Stratonovich Runge-Kutta), and the stochastic Runge-Kutta methods ``GeneralShARK`` and
``SPaRK`` (space-time Lévy area). ``SRA1``/``ShARK``/``SEA`` refuse the position-dependent noise.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

import jaxion  # noqa: E402,F401  (float64)
from jaxion.thermal.wells import Cage, Well  # noqa: E402
from jaxion.thermal.langevin import LangevinDynamics, run_langevin  # noqa: E402
from jaxion.thermal.model import follow_up_model  # noqa: E402
from jaxion.units import BOLTZMANN_MEV  # noqa: E402

SOLVERS = ("splitting", "euler_heun", "heun", "general_shark", "spark")
MASS, TEMPERATURE = 0.7, 300.0
KT = BOLTZMANN_MEV * TEMPERATURE
STIFFNESS, QUARTIC = 50.0, 20.0
SAVE_INTERVAL, BURN_IN = 0.04, 2.0  # ps


def _rotation(a, b, c):
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    return (np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]]) @ np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
            @ np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]]))


def accuracy_dynamics():
    rotation = _rotation(0.3, -0.7, 1.1)
    cage = Cage(jnp.asarray(MASS), jnp.diag(jnp.array([5e-4, 1e-3, 2e-3])),
                jnp.asarray(rotation @ np.diag([20.0, 40.0, 80.0]) @ rotation.T), jnp.asarray(5.0))
    return LangevinDynamics(cage, Well(jnp.asarray(STIFFNESS), jnp.asarray(QUARTIC)), temperature=TEMPERATURE)


def _well_energy(r):
    return 0.5 * STIFFNESS * r**2 + 0.25 * QUARTIC * r**4


def exact_mean_energy():
    """``<U>`` of the isotropic well by radial quadrature of ``r^2 exp(-U / k_B T)``."""
    weight = lambda r: r**2 * np.exp(-_well_energy(r) / KT)  # noqa: E731
    norm = integrate.quad(weight, 0, np.inf, epsabs=0, epsrel=1e-13)[0]
    return integrate.quad(lambda r: _well_energy(r) * weight(r), 0, np.inf, epsabs=0, epsrel=1e-13)[0] / norm


def boltzmann_states(seed, count):
    """Exact Boltzmann samples: radius by inverse CDF of ``r^2 exp(-U/kT)``, isotropic direction,
    Maxwell velocity."""
    rng = np.random.default_rng(seed)
    r = np.linspace(0.0, 4.0, 40001)
    cdf = integrate.cumulative_trapezoid(r**2 * np.exp(-_well_energy(r) / KT), r, initial=0.0)
    radius = np.interp(rng.uniform(size=count), cdf / cdf[-1], r)
    direction = rng.standard_normal((count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    velocity = np.sqrt(KT / MASS) * rng.standard_normal((count, 3))
    return jnp.asarray(radius[:, None] * direction), jnp.asarray(velocity)


def _ensemble(dynamics, states, duration, dt, save_every, key, solver):
    keys = jax.random.split(key, states[0].shape[0])
    run = jax.vmap(lambda k, r, v: run_langevin(dynamics, (r, v), duration, dt, key=k, save_every=save_every,
                                                solver=solver))
    return jax.block_until_ready(run(keys, *states))


def _timed(function):
    """(result, wall seconds, process seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def accuracy(quick):
    """Errors of the kinetic temperature and of <U> against dt for each solver, and each solver's
    errors minus the splitting's on the same trajectories (same starts, same Brownian increments:
    the paired difference is far more precise than either error)."""
    dynamics = accuracy_dynamics()
    exact_u = exact_mean_energy()
    batch, calls, duration = (64, 2, 10.0) if quick else (256, 4, 40.0)
    steps_list = (0.02, 0.04) if quick else (0.01, 0.02, 0.03, 0.04)
    burn = int(round(BURN_IN / SAVE_INTERVAL))
    rows, blocks_of = [], {}
    for solver in SOLVERS:
        for dt in steps_list:
            save_every = int(round(SAVE_INTERVAL / dt))
            steps = int(round(duration / dt))
            runs, timings = [], []
            for call in range(calls):  # the first call compiles; the others are timed; all are sampled
                states = boltzmann_states(100 * call + 7, batch)
                run, wall, cpu = _timed(lambda: _ensemble(dynamics, states, duration, dt, save_every,
                                                          jax.random.key(1000 * call + 3), solver))
                runs.append(run)
                timings.append((wall, cpu))
            finite = np.concatenate([np.asarray(r.finite) for r in runs])
            velocities = np.concatenate([np.asarray(r.velocities[:, burn:]) for r in runs])
            positions = np.concatenate([np.asarray(r.positions[:, burn:]) for r in runs])
            r2 = np.sum(positions**2, axis=-1)
            blocks = dict(kinetic=(MASS * velocities**2 / KT).mean(axis=(1, 2)) - 1.0,
                          potential=(0.5 * STIFFNESS * r2 + 0.25 * QUARTIC * r2**2).mean(axis=1) / exact_u - 1.0)
            blocks_of[solver, dt] = (finite, blocks)
            timed = np.array(timings[1:])
            row = dict(solver=solver, dt=dt, steps=steps, trajectories=int(finite.size),
                       finite_fraction=float(finite.mean()), compile_and_run_seconds=timings[0][0],
                       us_per_ion_step=1e6 * float(np.median(timed[:, 1])) / (batch * steps),
                       us_per_ion_step_wall=1e6 * float(np.median(timed[:, 0])) / (batch * steps))
            if solver == "splitting":  # BAOAB's midpoint velocities: no (w h)^2 / 4 deficit
                blocks["midpoint_kinetic"] = np.concatenate(
                    [np.asarray(r.midpoint_kinetic_temperature) for r in runs]) / TEMPERATURE - 1.0
            if finite.sum() >= 8:
                for name, values in blocks.items():
                    row[f"{name}_error"] = float(values[finite].mean())
                    row[f"{name}_stderr"] = float(values[finite].std(ddof=1) / np.sqrt(finite.sum()))
                reference_finite, reference = blocks_of.get(("splitting", dt), (None, None))
                if solver != "splitting" and reference is not None:
                    both = finite & reference_finite
                    for name in ("kinetic", "potential"):
                        difference = blocks[name][both] - reference[name][both]
                        row[f"{name}_minus_splitting"] = float(difference.mean())
                        row[f"{name}_minus_splitting_stderr"] = float(difference.std(ddof=1) / np.sqrt(both.sum()))
            rows.append(row)
            _print_accuracy(row)
    return dict(exact_mean_energy_meV=exact_u, kT_meV=KT, batch_per_call=batch, calls=calls, duration_ps=duration,
                burn_in_ps=BURN_IN, save_interval_ps=SAVE_INTERVAL, rows=rows)


def _print_accuracy(row):
    if "kinetic_error" in row:
        errors = (f"<MV^2>/3kT-1 = {100 * row['kinetic_error']:+7.3f} +- {100 * row['kinetic_stderr']:.3f} %   "
                  f"<U>/<U>ex-1 = {100 * row['potential_error']:+7.3f} +- {100 * row['potential_stderr']:.3f} %")
        if "midpoint_kinetic_error" in row:
            errors += (f"   midpoint <MV^2>/3kT-1 = {100 * row['midpoint_kinetic_error']:+7.3f} +- "
                       f"{100 * row['midpoint_kinetic_stderr']:.3f} %")
    else:
        errors = "too few finite trajectories"
    paired = ""
    if "kinetic_minus_splitting" in row:
        paired = (f"   minus splitting: {100 * row['kinetic_minus_splitting']:+6.2f} +- "
                  f"{100 * row['kinetic_minus_splitting_stderr']:.2f} %, {100 * row['potential_minus_splitting']:+6.2f} +- "
                  f"{100 * row['potential_minus_splitting_stderr']:.2f} %")
    print(f"{row['solver']:>14} dt={row['dt']:<5} finite {row['finite_fraction']:5.3f} {row['us_per_ion_step']:5.2f} us  "
          f"{errors}{paired}", flush=True)


def cost(quick):
    """Time per step on the follow-up model: one trajectory, and a batch of 32."""
    model = follow_up_model(4000.0)
    dynamics = LangevinDynamics(model, temperature=TEMPERATURE)  # no landscape: the rigid one
    dt, steps = 0.005, 1000 if quick else 4000
    start = dynamics.initial_state(jnp.full(3, 1.5), key=jax.random.key(0))
    rows = []
    for solver in SOLVERS:
        row = dict(solver=solver, dt=dt, steps=steps, sites=model.neighbours.capacity)
        single = lambda key: jax.block_until_ready(  # noqa: E731
            run_langevin(dynamics, start, steps * dt, dt, key=key, save_every=100, solver=solver))
        _, row["single_compile_and_run_seconds"], _ = _timed(lambda: single(jax.random.key(1)))
        _, wall, cpu = _timed(lambda: single(jax.random.key(2)))
        row["single_us_per_step"], row["single_us_per_step_wall"] = 1e6 * cpu / steps, 1e6 * wall / steps
        if not quick:
            batch = 32
            states = jax.vmap(lambda k: dynamics.initial_state(jnp.full(3, 1.5), key=k))(
                jax.random.split(jax.random.key(3), batch))
            ensemble = lambda key: _ensemble(dynamics, states, steps * dt, dt, 100, key, solver)  # noqa: E731
            _, row["batch_compile_and_run_seconds"], _ = _timed(lambda: ensemble(jax.random.key(4)))
            _, wall, cpu = _timed(lambda: ensemble(jax.random.key(5)))
            row["batch"] = batch
            row["batch_us_per_ion_step"] = 1e6 * cpu / (steps * batch)
            row["batch_us_per_ion_step_wall"] = 1e6 * wall / (steps * batch)
        rows.append(row)
        batch_text = (f", batch of 32: {row['batch_us_per_ion_step']:.1f} us/ion-step"
                      if "batch_us_per_ion_step" in row else "")
        print(f"{solver:>14}: one trajectory {row['single_us_per_step']:.1f} us/step "
              f"(compile+run {row['single_compile_and_run_seconds']:.1f} s){batch_text}", flush=True)
    return dict(model="follow_up_model(4000), rigid landscape, cutoff 6 Å", rows=rows)


def summary(accuracy_result, cost_result, threshold=0.02):
    """Per solver: the largest dt whose two errors (plus 2 standard errors) are below ``threshold``,
    and the follow-up model's cost per simulated ps per ion at that dt (its process time per step,
    batched if measured, divided by dt): the cost of a given accuracy. The splitting is listed twice:
    with the kinetic temperature of its saved (full-step) velocities and of its midpoint ones."""
    out = []
    variants = [(solver, "kinetic") for solver in SOLVERS] + [("splitting", "midpoint_kinetic")]
    for solver, kinetic in variants:
        rows = [r for r in accuracy_result["rows"] if r["solver"] == solver and r["finite_fraction"] == 1.0
                and f"{kinetic}_error" in r]
        good = [r for r in rows if all(abs(r[f"{n}_error"]) + 2 * r[f"{n}_stderr"] < threshold
                                       for n in (kinetic, "potential"))]
        best = max(good, key=lambda r: r["dt"]) if good else None
        cost_row = next(r for r in cost_result["rows"] if r["solver"] == solver)
        per_step = cost_row.get("batch_us_per_ion_step", cost_row["single_us_per_step"])
        out.append(dict(solver=solver if kinetic == "kinetic" else f"{solver} (midpoint KE)",
                        follow_up_us_per_step=per_step, largest_dt_within=best["dt"] if best else None,
                        follow_up_us_per_simulated_ps=per_step / best["dt"] if best else None))
    return dict(threshold=threshold, solvers=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trajectories and steps (smoke run)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write DIR/benchmarks/results/langevin[_quick].json (default: _common.results_dir())")
    args = parser.parse_args(argv)
    print("== accuracy: anharmonic well, position-dependent anisotropic friction, T = 300 K")
    accuracy_result = accuracy(args.quick)
    print("== cost: follow-up model (88 sites), dt = 5 fs")
    cost_result = cost(args.quick)
    summary_result = summary(accuracy_result, cost_result)
    print(f"== largest dt with both errors (+2 SE) below {100 * summary_result['threshold']:.0f} %, and the "
          "follow-up model's cost at that dt")
    for row in summary_result["solvers"]:
        if row["largest_dt_within"] is None:
            print(f"{row['solver']:>24}: none of the steps tried")
        else:
            print(f"{row['solver']:>24}: dt = {row['largest_dt_within']} ps, {row['follow_up_us_per_step']:.1f} "
                  f"us/step, {row['follow_up_us_per_simulated_ps'] / 1000:.2f} ms per simulated ps per ion")
    payload = dict(quick=args.quick, accuracy=accuracy_result, cost=cost_result, summary=summary_result)
    path = write_json("langevin_quick" if args.quick else "langevin", payload, root=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
