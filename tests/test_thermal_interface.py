"""The thermal descriptions through the common interface (jaxion.dynamics.run), against their runners.

* ``run`` without a stop reproduces each description's own runner (``run_langevin``, ``run_coloured``,
  ``run_full_thermal``) at the same save times: bitwise where the two compile the same arithmetic,
  else to rounding (each check says which and why);
* a stop (``LeftRegion``) ends each run at the end of the first step where it holds, found from the
  unstopped run saved at every step (for the coloured description's adaptive steps, from its
  solve's own steps); on a Langevin run that time is the first passage out of the region, a
  different one for each noise key;
* ``jax.vmap`` over keys through ``run`` equals the runs one by one;
* bad input (no ``dt``, a state of the wrong shape, no key where one is needed) is a ``ValueError``
  naming the problem.

Small systems and few steps: the analytic cage (jaxion.thermal.wells) for Langevin, the follow-up
model with the paper's 8-site cell stencil in a 4^3 box for the other two.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (float64)
from jaxion.dynamics import LeftRegion, run, run_from
from jaxion.thermal.coloured import ColouredNoiseDynamics, run_coloured
from jaxion.thermal.full import FullThermalDynamics, run_full_thermal
from jaxion.thermal.langevin import LangevinDynamics, run_langevin
from jaxion.thermal.model import follow_up_model, maxwell_velocity
from jaxion.thermal.modes import thermal_modes
from jaxion.thermal.neighbours import NeighbourSites
from jaxion.thermal.wells import Cage, Well

# Langevin: M = 0.7 in a k = 50 meV/Å^2 well (w dt = 0.085), anisotropic friction, 300 K.
CAGE = Cage(jnp.asarray(0.7), jnp.diag(jnp.array([2e-3, 4e-3, 8e-3])), jnp.diag(jnp.array([20.0, 40.0, 80.0])),
            jnp.asarray(5.0))
WELL = Well(jnp.asarray(50.0), jnp.asarray(0.0))
LANGEVIN_DT, LANGEVIN_STEPS = 0.01, 60
LANGEVIN_START = (jnp.array([0.1, -0.2, 0.05]), jnp.array([1.0, 0.5, -2.0]))
ESCAPE = LeftRegion(jnp.zeros(3), 0.5)  # the thermal amplitude sqrt(k_B T / k) is 0.72 Å: left within 0.6 ps

# Coloured noise and the full lattice: 4^3 box, the 8 corners of the ion's cell, 300 K lattice.
SIZE = 4
START, KICK = jnp.array([1.5, 1.4, 1.6]), jnp.array([2.0, -1.0, 0.5])


def langevin(solver="splitting"):
    return LangevinDynamics(CAGE, WELL, temperature=300.0, dt=LANGEVIN_DT, solver=solver)


@pytest.fixture(scope="module")
def framework():
    model = follow_up_model(4000.0, size=SIZE, neighbours=NeighbourSites.cell_corners(3.0, size=SIZE))
    return model, thermal_modes(model.lattice, SIZE, 300.0, jax.random.key(3))


def _first(stop, trajectory):
    """Index of the first save (after the start) where ``stop`` holds on ``trajectory``, checking
    that no save is within rounding of the condition's edge (so the index is not a rounding's)."""
    distance = np.linalg.norm(np.asarray(trajectory.position) - np.asarray(stop.centre), axis=-1)
    finite = np.isfinite(distance)
    assert np.min(np.abs(distance[finite] - float(stop.radius))) > 1e-9
    holds = distance > float(stop.radius)
    assert not holds[0] and holds.any()
    return int(np.argmax(holds))


def _assert_stopped_at(stopped, free, index, atol=0.0):
    """``stopped`` ends at ``free``'s save ``index`` (every step saved in both): its time, state and
    the saves up to it as ``free``'s (to ``atol``; ``0``: bitwise), ``inf`` after it."""
    assert float(stopped.t_final) == float(free.ts[index])
    np.testing.assert_allclose(stopped.position_final, free.position[index], rtol=0, atol=atol)
    np.testing.assert_allclose(stopped.velocity_final, free.velocity[index], rtol=0, atol=10 * atol)
    reached = slice(0, index + 1)
    np.testing.assert_array_equal(stopped.ts[reached], free.ts[reached])
    np.testing.assert_allclose(stopped.position[reached], free.position[reached], rtol=0, atol=atol)
    assert np.all(np.isinf(np.asarray(stopped.ts[index + 1:])))


# --- Langevin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["splitting", "euler_heun"])
def test_langevin_run_is_run_langevin(solver):
    """``run`` with the description's ``dt`` and solver against ``run_langevin`` with the same key,
    step, solver and every step saved: bitwise (the same terms, noise path, StepTo grid and saves in
    one diffrax solve; the energies of the saves vectorised after it in both)."""
    dynamics, key = langevin(solver), jax.random.key(7)
    t1 = LANGEVIN_STEPS * LANGEVIN_DT
    reference = run_langevin(dynamics, LANGEVIN_START, t1, LANGEVIN_DT, key=key, solver=solver)
    trajectory = run(dynamics, LANGEVIN_START, t1, saveat=LANGEVIN_STEPS + 1, key=key)
    for ours, theirs in (("ts", "ts"), ("position", "positions"), ("velocity", "velocities"), ("energy", "energy")):
        np.testing.assert_array_equal(getattr(trajectory, ours), getattr(reference, theirs), err_msg=ours)
    assert float(trajectory.t_final) == float(reference.ts[-1])
    np.testing.assert_array_equal(trajectory.position_final, reference.final_state[0])
    assert not trajectory.conservative  # the drag and the noise exchange energy


def test_langevin_left_region_stop_is_the_first_passage_time():
    """``LeftRegion`` ends a Langevin run at the first grid time the ion is outside: the escape
    (first-passage) time, found from the unstopped run of the same key saved at every step. The
    stopped run is the unstopped one up to there, bitwise (the same steps; the event only ends the
    loop); saves after it are ``inf``."""
    dynamics, key = langevin(), jax.random.key(7)
    t1, saves = LANGEVIN_STEPS * LANGEVIN_DT, LANGEVIN_STEPS + 1
    free = run(dynamics, LANGEVIN_START, t1, saveat=saves, key=key)
    stopped = run(dynamics, LANGEVIN_START, t1, saveat=saves, key=key, stop=ESCAPE)
    _assert_stopped_at(stopped, free, _first(ESCAPE, free))


def test_langevin_vmap_over_keys_equals_runs_one_by_one():
    """Stopped runs vmapped over four keys against the same runs one by one: the same escape
    times (grid times, exactly) and, to rounding (1e-12 Å, 1e-11 Å/ps, 1e-12 meV: the batched
    compilation orders some sums differently; measured 1e-15, 2e-14, 2e-13), the same
    trajectories. Each key gives its own noise, so the escape times differ."""
    dynamics = langevin()
    t1, saves = LANGEVIN_STEPS * LANGEVIN_DT, LANGEVIN_STEPS + 1
    keys = jax.random.split(jax.random.key(8), 4)
    batch = jax.vmap(lambda k: run(dynamics, LANGEVIN_START, t1, saveat=saves, key=k, stop=ESCAPE))(keys)
    alone = [run(dynamics, LANGEVIN_START, t1, saveat=saves, key=k, stop=ESCAPE) for k in keys]
    np.testing.assert_array_equal(batch.t_final, [float(a.t_final) for a in alone])
    np.testing.assert_array_equal(batch.ts, np.stack([a.ts for a in alone]))
    assert len(set(np.asarray(batch.t_final).tolist())) > 1
    reached = np.isfinite(np.asarray(batch.ts))
    for name, atol in (("position", 1e-12), ("velocity", 1e-11), ("energy", 1e-12)):
        ours, theirs = np.asarray(getattr(batch, name)), np.stack([getattr(a, name) for a in alone])
        np.testing.assert_allclose(ours[reached], theirs[reached], rtol=0, atol=atol, err_msg=name)
    np.testing.assert_allclose(batch.position_final, np.stack([a.position_final for a in alone]), rtol=0, atol=1e-12)


# --- coloured noise ----------------------------------------------------------------------------


def test_coloured_run_is_run_coloured_and_stops_at_a_step(framework):
    """``run`` against ``run_coloured`` (Tsit5, steps of at most dt = 2 fs under error control),
    saved every 2 fs: the same solve, but ``run_coloured`` closes over the description (its arrays
    are constants XLA may fold) where ``run`` traces it, and evaluates the energies eagerly: equal
    to rounding (1e-12 Å, 1e-11 Å/ps, 1e-11 meV; measured 0, 0, 3e-14). A ``LeftRegion`` stop ends
    the run at the end of the first step of the unstopped solve (its steps saved,
    ``SaveAt(steps=True)``) where the ion is outside (same tolerances)."""
    model, modes = framework
    dt, steps = 0.002, 50
    dynamics = ColouredNoiseDynamics(model, modes, dt=dt)
    reference = run_coloured(dynamics, START, KICK, steps * dt, dt)
    state = dynamics.initial_state(START, KICK)
    free = run(dynamics, state, steps * dt, saveat=steps + 1)
    np.testing.assert_array_equal(free.ts, reference.ts)
    for ours, theirs, atol in (("position", "positions", 1e-12), ("velocity", "velocities", 1e-11),
                               ("energy", "energy", 1e-11)):
        np.testing.assert_allclose(getattr(free, ours), getattr(reference, theirs), rtol=0, atol=atol, err_msg=ours)
    assert not free.conservative and np.ptp(np.asarray(free.energy)) > 1e-3  # the sites do work

    stop = LeftRegion(START, 0.1)
    dt0, controller, max_steps = dynamics.step_control(steps * dt)
    solve = diffrax.diffeqsolve(dynamics.terms(), dynamics.solver(), 0.0, steps * dt, dt0, state, max_steps=max_steps,
                                saveat=diffrax.SaveAt(steps=True), stepsize_controller=controller)
    taken = np.isfinite(np.asarray(solve.ts))
    step_times, step_positions = np.asarray(solve.ts)[taken], np.asarray(solve.ys[0])[taken]
    index = int(np.argmax(np.linalg.norm(step_positions - np.asarray(START), axis=-1) > 0.1))
    assert 0 < index < taken.sum() - 1
    stopped = run(dynamics, state, steps * dt, saveat=steps + 1, stop=stop)
    assert float(stopped.t_final) == pytest.approx(float(step_times[index]), rel=1e-12)
    np.testing.assert_allclose(stopped.position_final, step_positions[index], rtol=0, atol=1e-12)
    reached = np.asarray(free.ts) <= float(stopped.t_final)
    np.testing.assert_array_equal(np.isfinite(np.asarray(stopped.ts)), reached)
    np.testing.assert_allclose(np.asarray(stopped.position)[reached], np.asarray(free.position)[reached], atol=1e-12)


# --- the full lattice --------------------------------------------------------------------------


def test_full_run_is_run_full_thermal_and_stops_inside_a_segment(framework):
    """``run`` against ``run_full_thermal`` from the same thermal state, dt = 4 fs, every step saved:
    the same scan of segments, bitwise (times, positions, velocities, energies, the final state). A
    ``LeftRegion`` stop with saves every 5 steps (5-step segments) ends the run inside a segment at
    the first step where the ion is outside, found from that unstopped run: the same steps,
    bitwise, whatever the segments."""
    model, _ = framework
    dt, steps = 0.004, 20
    dynamics = FullThermalDynamics(model, temperature=300.0, dt=dt)
    state = dynamics.initial_state(START, KICK, jax.random.key(4))  # a 300 K lattice
    reference = run_full_thermal(dynamics, state, steps * dt, dt)
    free = run(dynamics, state, steps * dt, saveat=steps + 1)
    for ours, theirs in (("ts", "ts"), ("position", "positions"), ("velocity", "velocities"), ("energy", "energy")):
        np.testing.assert_array_equal(getattr(free, ours), getattr(reference, theirs), err_msg=ours)
    np.testing.assert_array_equal(free.position_final, reference.final_state[0][1])
    np.testing.assert_array_equal(free.velocity_final, reference.final_state[1][1])
    assert free.conservative and float(free.energy_drift) < 1e-3 * abs(float(free.energy[0]))

    stop = LeftRegion(START, 0.1)
    index = _first(stop, free)
    assert index % 5 != 0  # inside a segment of the coarse run
    coarse = run(dynamics, state, steps * dt, saveat=5, stop=stop)
    assert float(coarse.t_final) == float(free.ts[index])
    np.testing.assert_array_equal(coarse.position_final, free.position[index])
    np.testing.assert_array_equal(coarse.energy_final, free.energy[index])
    reached = 5 * np.arange(5) <= index
    np.testing.assert_array_equal(np.isfinite(np.asarray(coarse.ts)), reached)
    np.testing.assert_array_equal(np.asarray(coarse.position)[reached], np.asarray(free.position)[::5][reached])


def test_full_initial_state_draws_the_thermal_lattice_from_the_key(framework):
    """``initial_state(R, V, key)`` is ``thermal_state`` of the modes drawn from ``key`` at the
    description's temperature (bitwise: the same calls); without a key the lattice is at rest at
    0 K, and a key is required at T > 0; the former positional form ``(R, V, u, v)`` still works."""
    model, _ = framework
    hot = FullThermalDynamics(model, temperature=300.0)
    key = jax.random.key(4)
    drawn = hot.initial_state(START, KICK, key)
    expected = hot.thermal_state(START, KICK, thermal_modes(model.lattice, SIZE, 300.0, key))
    jax.tree.map(np.testing.assert_array_equal, drawn, expected)
    (u, _), (v, _) = drawn
    jax.tree.map(np.testing.assert_array_equal, hot.initial_state(START, KICK, u, v), drawn)
    rest = FullThermalDynamics(model).initial_state(START, KICK)
    assert not np.any(np.asarray(rest[0][0])) and not np.any(np.asarray(rest[1][0]))
    with pytest.raises(ValueError, match="key is needed"):
        hot.initial_state(START, KICK)
    with pytest.raises(ValueError, match="not both"):
        hot.initial_state(START, KICK, key, v)


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_a_value_error_naming_the_problem(framework):
    model, modes = framework
    without_dt = [LangevinDynamics(CAGE, WELL, temperature=300.0), ColouredNoiseDynamics(model, modes),
                  FullThermalDynamics(model)]
    states = [LANGEVIN_START, LANGEVIN_START, without_dt[2].initial_state(START, KICK)]
    for dynamics, state in zip(without_dt, states):
        name = type(dynamics).__name__
        with pytest.raises(ValueError, match=rf"{name} was built without a time step: pass dt"):
            run(dynamics, state, 0.1, saveat=3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="dt"):
        LangevinDynamics(CAGE, WELL, dt=-0.01)
    with pytest.raises(ValueError, match="dt"):
        FullThermalDynamics(model, dt=0.0)
    with pytest.raises(ValueError, match="additive noise"):
        LangevinDynamics(CAGE, WELL, dt=0.01, solver="shark")
    dynamics = langevin()
    with pytest.raises(ValueError, match=r"state position must have shape \(3\), got \(2,\)"):
        run(dynamics, (jnp.zeros(2), jnp.zeros(3)), 0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"state is \(R \(3,\), V \(3,\)\)"):
        run(ColouredNoiseDynamics(model, modes, dt=0.002), (START, KICK, KICK), 0.1)
    with pytest.raises(ValueError, match=r"lattice displacements \(size=4\) must have shape \(4, 4, 4, 3\)"):
        run(FullThermalDynamics(model, dt=0.004), ((jnp.zeros((3, 3, 3, 3)), START), (jnp.zeros((3, 3, 3, 3)), KICK)),
            0.1)
    with pytest.raises(ValueError, match="needs key"):
        run(dynamics, LANGEVIN_START, 0.1)
    with pytest.raises(ValueError, match="state velocity must be finite"):
        run(dynamics, (jnp.zeros(3), jnp.array([0.0, jnp.nan, 0.0])), 0.1, key=jax.random.key(0))
    # run_from checks the step against the well (sqrt(M / k) = 0.118 ps: dt = 0.1 ps is too large)
    with pytest.raises(ValueError, match=r"dt = 0\.1 ps is too large for the ion's well"):
        run_from(LangevinDynamics(CAGE, WELL, temperature=300.0, dt=0.1), *LANGEVIN_START, 1.0, key=jax.random.key(0))
    # the Maxwell draw is the one function the protocols use too
    velocity = dynamics.initial_state(jnp.zeros(3), None, jax.random.key(2))[1]
    np.testing.assert_array_equal(velocity, maxwell_velocity(jax.random.key(2), 300.0, CAGE.ion_mass))
