"""The one dynamics interface (jaxion.dynamics): run and the stop objects against independent routes.

* ``run`` of the full lattice against a hand-written velocity-Verlet ``lax.scan`` on
  ``FullLattice.acceleration`` (the stop, the saves and the end state; 1e-13);
* ``run`` of the time-local description against diffrax called directly on
  ``LocalDynamics.phase_space_field`` (fixed and adaptive steps, with the plane stop; 1e-13);
* every stop object ends a run of each description (full, local, kernel) at the first step point
  where it holds, found from the same run without a stop saved at every step;
* a new description written here as one subclass runs through ``run``, ``simulate`` and
  ``single_pass`` without touching the package: it conserves energy and equals the local method
  with the drag and the softening off;
* ``size=None`` is the infinite lattice for the full method (a box no sound returns through: the
  same trajectory as a twice larger box) and a clear error where that box is too large;
* layers: the descriptions never import the protocol layer, and have no function-level imports.
"""

import ast
import logging
import math
import pathlib
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion
from jaxion import full, kernel, local
from jaxion.dynamics import (
    AbstractDiffraxDynamics,
    AnyStop,
    CrossedPlane,
    LeftRegion,
    TimeReached,
    Trapped,
    run,
)
from jaxion.lattice import SimpleCubic
from jaxion.potentials import Gaussian
from jaxion.response import max_sound_speed
from jaxion.simulation import simulate, single_pass
from jaxion.system import System

PIN_XY = (jnp.inf, jnp.inf, 1.0)
# One site with a Gaussian bump of 0.5 (range 0.5); the ion, 0.1 off the axis, heads at it with kinetic
# energy 4^2 / 8 pi^2 = 0.20 < 0.49: it slows (to speed 2 at tau = 0.23) and turns back (at 0.32).
BUMP = System(SimpleCubic(), Gaussian(0.5, 0.5), sites=[(0, 0, 0)], mass=PIN_XY)
START, KICK = jnp.array([0.1, 0.0, -1.5]), jnp.array([0.0, 0.0, 4.0])
DT, T1 = 2e-3, 0.3


def quiet(function, *args, **kwargs):
    """``function(*args, **kwargs)`` without the box warnings of the small boxes used here (the
    comparisons are between runs in the same box)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxion.simulation.FiniteBoxWarning)
        return function(*args, **kwargs)


# --- full lattice: run against a hand-written velocity Verlet -------------------------------------


def test_full_run_matches_hand_written_verlet():
    """FullDynamics (Verlet, L = 6) through ``run`` with ``CrossedPlane`` against ``lax.scan`` of
    kick-drift-kick steps on ``FullLattice.acceleration`` (state ``((halo, sigma), (rho', sigma'))``,
    drift ``q += h (G rho', sigma')``): the ion's positions at every step point to 1e-13, the stop
    at the first step point with ``z >= -1.0``, saves past it ``inf``."""
    system = System(SimpleCubic(), Gaussian(0.5, 0.5), sites=[(0, 0, 0), (0, 0, 1)], mass=PIN_XY)
    x0, v0 = jnp.array([0.1, 0.0, -1.5]), jnp.array([0.0, 0.0, 9.0])
    dynamics = full.FullDynamics(system, 6, dt=DT, solver="verlet", box_tol=None)
    lattice = dynamics.lattice
    steps = 300

    @jax.jit
    def verlet(y0):
        def step(y, _):
            (halo, sigma), (rho_dot, sigma_dot) = y
            a_rho, a_sigma = lattice.acceleration((halo, sigma))
            rho_dot = tuple(v + 0.5 * DT * a for v, a in zip(rho_dot, a_rho))
            sigma_dot = sigma_dot + 0.5 * DT * a_sigma
            halo = tuple(q + DT * g for q, g in zip(halo, lattice.wrap(rho_dot)))
            sigma = sigma + DT * sigma_dot
            a_rho, a_sigma = lattice.acceleration((halo, sigma))
            rho_dot = tuple(v + 0.5 * DT * a for v, a in zip(rho_dot, a_rho))
            sigma_dot = sigma_dot + 0.5 * DT * a_sigma
            y = ((halo, sigma), (rho_dot, sigma_dot))
            return y, (sigma, sigma_dot)

        return jax.lax.scan(step, y0, None, length=steps)[1]

    state = dynamics.initial_state(x0, v0)
    sigma, sigma_dot = (np.concatenate([np.asarray(start)[None], np.asarray(path)])
                        for start, path in zip((x0, v0), verlet(state)))
    free = run(dynamics, state, steps * DT, saveat=steps + 1)
    np.testing.assert_allclose(free.ts, np.arange(steps + 1) * DT, rtol=1e-15, atol=0)
    np.testing.assert_allclose(free.position, sigma, rtol=0, atol=1e-13)
    np.testing.assert_allclose(free.velocity, sigma_dot, rtol=1e-13, atol=1e-13)
    assert np.ptp(np.asarray(free.energy)) < 1e-4 * abs(float(free.energy[0]))  # Verlet at dt = 2e-3: 6.4e-5

    crossing = int(np.argmax(sigma[:, 2] >= 2.5))  # the ion passes both sites and the plane z = 2.5
    assert 0 < crossing < steps
    stopped = run(dynamics, state, steps * DT, saveat=steps + 1, stop=CrossedPlane(2.5))
    assert float(stopped.t_final) == pytest.approx(crossing * DT, rel=1e-12)
    np.testing.assert_allclose(stopped.position_final, sigma[crossing], rtol=0, atol=1e-13)
    np.testing.assert_allclose(stopped.position[: crossing + 1], sigma[: crossing + 1], rtol=0, atol=1e-13)
    assert np.all(np.isinf(np.asarray(stopped.ts[crossing + 1:])))
    # the protocol: full.simulate with stop_z is the same run
    legacy = quiet(full.simulate, system, x0, v0, steps * DT, stop_z=2.5, size=6, dt=DT, solver="verlet",
                   n_save=steps + 1)
    for name in ("ts", "position", "velocity", "t_final", "position_final", "velocity_final"):
        np.testing.assert_array_equal(getattr(legacy, name), getattr(stopped, name))


# --- local: run against diffrax called directly -----------------------------------------------------


@pytest.mark.parametrize("dt", [None, 2e-3])
def test_local_run_matches_diffrax_called_directly(dt):
    """LocalDynamics (drag and softening on, periodic 6^3 Green's function) through ``run`` with
    ``CrossedPlane`` against ``diffrax.diffeqsolve`` of ``ODETerm(phase_space_field)`` with the same
    solver, steps and a boolean event ``z >= 7.5``: the saved states and the end to 1e-13."""
    system = System(SimpleCubic(), Gaussian(1.0, 0.5), sites=[(0, 0, j) for j in range(8)], mass=PIN_XY)
    x0, v0 = jnp.array([0.0, 0.0, 7.0]), jnp.array([0.0, 0.0, 7.5])
    dynamics = local.LocalDynamics(system, size=6, dt=dt)
    t1, n_save = 1.0, 51
    ts = jnp.linspace(0.0, t1, n_save)
    direct = diffrax.diffeqsolve(
        diffrax.ODETerm(dynamics.phase_space_field), diffrax.Tsit5(), 0.0, t1, dt, jnp.concatenate([x0, v0]),
        saveat=diffrax.SaveAt(subs=(diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(t1=True))),
        stepsize_controller=diffrax.ConstantStepSize() if dt else diffrax.PIDController(rtol=1e-8, atol=1e-10),
        event=diffrax.Event(lambda t, y, args, **kwargs: y[2] >= 7.5), max_steps=4096,
    )
    ours = run(dynamics, dynamics.initial_state(x0, v0), t1, saveat=n_save, stop=CrossedPlane(7.5))
    reached = np.isfinite(np.asarray(direct.ts[0]))
    assert 0 < reached.sum() < n_save  # the stop ended the run early
    np.testing.assert_array_equal(np.isfinite(np.asarray(ours.ts)), reached)
    np.testing.assert_allclose(np.asarray(ours.position)[reached], np.asarray(direct.ys[0])[reached, :3], atol=1e-13)
    np.testing.assert_allclose(np.asarray(ours.velocity)[reached], np.asarray(direct.ys[0])[reached, 3:], atol=1e-13)
    assert float(ours.t_final) == pytest.approx(float(direct.ts[1][0]), rel=1e-13)
    np.testing.assert_allclose(ours.position_final, direct.ys[1][0, :3], atol=1e-13)
    assert not ours.conservative  # the drag removes energy
    # the protocol: local.simulate with stop_z is the same run
    legacy = local.simulate(system, x0, v0, t1, stop_z=7.5, size=6, dt=dt, n_save=n_save)
    for name in ("ts", "position", "velocity", "energy", "t_final", "position_final", "velocity_final"):
        np.testing.assert_array_equal(getattr(legacy, name), getattr(ours, name))


# --- every stop on every description ----------------------------------------------------------------


BUILD = {  # the three descriptions of BUMP with fixed steps DT (small periodic boxes: cheap to build)
    "full": lambda: full.FullDynamics(BUMP, 8, dt=DT, solver="verlet", box_tol=None),
    "local": lambda: local.LocalDynamics(BUMP, size=8, dt=DT),
    "kernel": lambda: kernel.KernelDynamics.build(BUMP, T1, dt=DT, size=8),
}


STOPS = {
    "plane": CrossedPlane(-1.0),
    "time": TimeReached(0.1011),
    "region": LeftRegion(START, 0.33),
    "trapped": Trapped(2.0),
    "any_time_first": AnyStop(CrossedPlane(5.0), TimeReached(0.0511)),
    "any_plane_first": AnyStop(CrossedPlane(-1.0), TimeReached(0.5)),
    "plane_x": CrossedPlane(0.1 + 1e-9, axis=0),  # never: x stays 0.1 (pinned)
}


def _expected(stop, free):
    """Index of the first step point (after the start) where ``stop`` holds, from a run without a stop
    saved at every step point; ``None`` if it never holds."""
    holds = np.array([bool(stop(t, x, v)) for t, x, v in zip(np.asarray(free.ts), np.asarray(free.position),
                                                           np.asarray(free.velocity))])
    assert not holds[0]
    return int(np.argmax(holds)) if holds.any() else None


@pytest.mark.parametrize("method", ["full", "local", "kernel"])
def test_each_stop_ends_the_run_where_it_should(method):
    """Each stop object ends the run at the first step point where it holds (the ion's state and the
    time there), the same for every description; later saves are ``inf``; a stop that never holds
    leaves the run to ``t1``. The scenario meets every stop: the ion moves 0.33 from its start (region,
    step 43), crosses z = -1 (plane, 67) and slows to speed 2 (trapped, 113); the clock passes 0.05
    and 0.1 (steps 26 and 51)."""
    dynamics = BUILD[method]()
    state = dynamics.initial_state(START, KICK)
    steps = int(round(T1 / DT))
    free = run(dynamics, state, T1, saveat=steps + 1)
    assert np.all(np.isfinite(np.asarray(free.ts)))
    expected = {name: _expected(stop, free) for name, stop in STOPS.items()}
    assert all(expected[name] is not None for name in STOPS if name != "plane_x")  # met within the run
    assert expected["plane"] < expected["trapped"] and expected["any_plane_first"] == expected["plane"]
    assert expected["any_time_first"] < expected["time"]
    assert expected["plane_x"] is None
    for name, stop in STOPS.items():
        stopped = run(dynamics, state, T1, saveat=steps + 1, stop=stop)
        index = expected[name]
        if index is None:
            assert float(stopped.t_final) == pytest.approx(T1, rel=1e-12), name
            assert np.all(np.isfinite(np.asarray(stopped.ts))), name
            continue
        assert float(stopped.t_final) == pytest.approx(float(free.ts[index]), rel=1e-12, abs=1e-15), name
        np.testing.assert_allclose(stopped.position_final, free.position[index], atol=1e-12, err_msg=name)
        np.testing.assert_allclose(stopped.velocity_final, free.velocity[index], atol=1e-11, err_msg=name)
        assert np.all(np.isinf(np.asarray(stopped.ts[index + 1:]))), name
        # the save at the stop's step point itself may fall a rounding after the accumulated step time
        assert np.all(np.isfinite(np.asarray(stopped.ts[:index]))), name


def test_stop_that_holds_at_the_start_ends_the_run_at_once():
    dynamics = BUILD["full"]()
    stopped = run(dynamics, dynamics.initial_state(START, KICK), T1, saveat=4, stop=CrossedPlane(-2.0))
    assert float(stopped.t_final) == 0.0
    np.testing.assert_array_equal(stopped.position_final, START)


def test_stop_objects_validate_and_trace():
    with pytest.raises(ValueError, match="axis"):
        CrossedPlane(1.0, axis=3)
    with pytest.raises(ValueError, match="AnyStop"):
        AnyStop()
    with pytest.raises(ValueError, match="centre"):
        LeftRegion(jnp.zeros(2), 1.0)
    with pytest.raises(ValueError, match="stop must be"):
        run(BUILD["full"](), None, T1, stop=lambda t, x, v: True)
    # the straight-path durations the checks size themselves with
    assert CrossedPlane(2.5).duration(START, KICK, 10.0) == pytest.approx(1.0)
    assert TimeReached(0.3).duration(START, KICK, 10.0) == pytest.approx(0.3)
    assert AnyStop(CrossedPlane(2.5), TimeReached(0.3)).duration(START, KICK, 10.0) == pytest.approx(0.3)
    assert Trapped(1.0).duration(START, KICK, 10.0) == 10.0
    # values are arrays (traced by the solve: runs that differ in them share a compilation)
    assert isinstance(CrossedPlane(1).value, jax.Array) and CrossedPlane(1).value.dtype == jnp.float64


def test_runs_differing_in_time_stop_and_step_share_one_compilation(caplog):
    """Three fixed-step local runs with different t1, stop plane and dt (same bound on the steps)
    compile the solve once (the description's dt is traced, not a static number)."""
    dynamics = local.LocalDynamics(BUMP, size=8)
    caplog.set_level(logging.WARNING)
    with jax.log_compiles():
        for t1, z, dt in ((0.30, -1.0, 2.0e-3), (0.31, -0.9, 2.1e-3), (0.29, -1.1, 1.9e-3)):
            trajectory = local.integrate(dynamics, START, KICK, t1, stop_z=z, dt=dt, n_save=5)
            jax.block_until_ready(trajectory)
    solves = [r for r in caplog.records if "Compiling" in r.getMessage() and "_solve" in r.getMessage()]
    assert len(solves) == 1  # the first run compiles (n_save = 5 is used by no other test), the others reuse it


# --- a new description: one subclass in this file ------------------------------------------------


class IonInStaticPotential(AbstractDiffraxDynamics):
    """The ion alone in the potential of the undisplaced framework, ``(mu / 4 pi^2) sigma'' =
    -grad Phi(0, sigma)``: a description written as one subclass, outside the package."""

    system: System
    rtol: float = eqx.field(static=True, default=1e-10)
    atol: float = eqx.field(static=True, default=1e-12)

    def initial_state(self, position, velocity, key=None):
        return jnp.concatenate([jnp.asarray(position, float), jnp.asarray(velocity, float)])

    def ion(self, state):
        return state[:3], state[3:]

    def potential(self, sigma):
        return self.system.interaction(jnp.zeros((len(self.system.sites), 3)), sigma)

    def energy(self, state):
        return self.system.ion_kinetic_energy(state[3:]) + self.potential(state[:3])

    def _field(self, t, state, args):
        force = -jax.grad(self.potential)(state[:3])
        return jnp.concatenate([state[3:], 4.0 * math.pi**2 * self.system.inverse_mass * force])

    def terms(self, key=None):
        return diffrax.ODETerm(self._field)

    def solver(self):
        return diffrax.Tsit5()

    def step_control(self, t1):
        return None, diffrax.PIDController(rtol=self.rtol, atol=self.atol), 1 << 16


def test_new_description_runs_through_run_simulate_and_single_pass():
    """The toy description conserves its energy (adaptive Tsit5, rtol 1e-10: drift < 1e-8 of it), equals
    the local method with the drag and the softening off (the same equation; 1e-8), and gives a zero
    single-pass loss (a static potential returns the kinetic energy) like the local method."""
    system = System(SimpleCubic(), Gaussian(0.3, 0.5), sites=[(0, 0, 0), (0, 0, 1)], mass=PIN_XY)
    x0, v0 = jnp.array([0.2, 0.0, -1.5]), jnp.array([0.0, 0.0, 6.0])
    toy = IonInStaticPotential(system)
    through_run = run(toy, toy.initial_state(x0, v0), 1.0, saveat=101, stop=CrossedPlane(3.0))
    through_simulate = simulate(toy, x0, v0, 1.0, stop_z=3.0, n_save=101)
    np.testing.assert_array_equal(through_run.position, through_simulate.position)
    energy = np.asarray(through_run.energy)[np.isfinite(np.asarray(through_run.ts))]
    assert np.ptp(energy) < 1e-8 * abs(energy[0])  # measured 3e-9
    assert 0.0 < float(through_run.t_final) < 1.0  # stopped at the plane
    reference = local.simulate(system, x0, v0, 1.0, stop_z=3.0, n_save=101, drag=False, softening=False, rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(through_run.position_final, reference.position_final, atol=1e-8)
    np.testing.assert_allclose(through_run.velocity_final, reference.velocity_final, atol=1e-8)

    speeds = jnp.array([5.0, 8.0])
    toy_pass = single_pass(toy, speeds, start=(0.2, 0.0), n_save=11)
    local_pass = single_pass(system, speeds, start=(0.2, 0.0), method="local", drag=False, softening=False,
                             rtol=1e-10, atol=1e-12, n_save=11)
    assert np.all(np.asarray(toy_pass.completed))
    kinetic = np.asarray(system.ion_kinetic_energy(jnp.stack([0 * speeds, 0 * speeds, speeds], axis=-1)))
    assert np.all(np.abs(np.asarray(toy_pass.loss)) < 1e-9 * kinetic)
    np.testing.assert_allclose(toy_pass.loss, local_pass.loss, atol=1e-9 * float(np.max(kinetic)))
    with pytest.raises(ValueError, match="options"):
        simulate(toy, x0, v0, 1.0, size=8)  # a ready description takes no description options


# --- the meaning of size ------------------------------------------------------------------------------


def test_full_size_none_is_a_box_no_sound_returns_through():
    """size=None: the box (sites' span + sound travel over t1 + the front's tail) gives the same ion
    trajectory as a box twice as large (to 1e-12; measured: equal) while the ion is still at the site
    when the sound would return through a box of span + travel (there, 1.7e-9 apart), and no
    returning-sound warning."""
    t1 = 0.3
    size = full.infinite_lattice_size(BUMP, t1)
    speed_cells = max_sound_speed(BUMP.lattice) * t1 / float(BUMP.lattice.spacing)
    assert speed_cells + 1 <= size <= speed_cells + 20
    with warnings.catch_warnings():
        warnings.simplefilter("error", jaxion.simulation.FiniteBoxWarning)
        infinite = full.simulate(BUMP, START, KICK, t1, dt=DT, solver="verlet", n_save=7)
    assert infinite.site_displacement is None
    larger = full.simulate(BUMP, START, KICK, t1, size=2 * size, dt=DT, solver="verlet", n_save=7)
    np.testing.assert_allclose(infinite.position, larger.position, rtol=0, atol=1e-12)
    np.testing.assert_allclose(infinite.velocity, larger.velocity, rtol=0, atol=1e-11)
    assert full.FullDynamics.build(BUMP, t1, dt=DT).size == size


def test_full_size_none_refuses_a_box_beyond_the_cap():
    """A long run on the cubic lattice would need L^3 beyond 2^21 masses: a ValueError that names the
    box, the cap and the ways out (the kernel method, an explicit size); an explicit size still runs."""
    with pytest.raises(ValueError, match=r"L = \d+.*2,097,152 masses.*method='kernel'.*explicit size"):
        simulate(BUMP, START, KICK, 5.0, method="full", dt=DT)
    with pytest.raises(ValueError, match="method='kernel'"):
        single_pass(BUMP, 1.0, (0.1, 0.0), method="full", dt=DT)
    full.check_step(BUMP, START, KICK, 5.0, size=8, dt=DT)  # a given box: no sizing


# --- layers ------------------------------------------------------------------------------------------


DESCRIPTION_MODULES = ("dynamics.py", "run_checks.py", "full.py", "local.py", "kernel.py", "trajectory.py")


@pytest.mark.parametrize("name", DESCRIPTION_MODULES)
def test_descriptions_do_not_import_the_protocols(name):
    """The descriptions and the interface import nothing from jaxion.simulation (the protocols, which
    import them), and hide no import inside a function."""
    tree = ast.parse((pathlib.Path(jaxion.__file__).parent / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module not in ("simulation", "jaxion.simulation"), f"{name} imports jaxion.simulation"
            assert not (node.module is None and any(alias.name == "simulation" for alias in node.names)), name
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        inner = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not inner, f"{name}: function {function.name} imports inside its body"
