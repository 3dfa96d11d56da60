"""Coloured-noise description (physics.md 5.3) against independent routes.

Each check compares the dynamics with something computed another way: the direct mode sum for
the sites' motion, the Hessian of the whole interaction for the drag, finite differences for
the force, and the energy balance (work of the moving sites and of the drag) integrated along
the trajectory.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (float64)
from jaxion.thermal.coloured import ColouredNoiseDynamics, run_coloured
from jaxion.thermal.model import follow_up_model
from jaxion.thermal.modes import thermal_modes

SIZE = 6  # the smallest box holding the 6 Å stencil (6 cells) once
CENTRE = jnp.array([1.5, 1.5, 1.5])


@pytest.fixture(scope="module")
def hot():
    model = follow_up_model(4000.0, size=SIZE)
    modes = thermal_modes(model.lattice, SIZE, 300.0, jax.random.key(3))
    return ColouredNoiseDynamics(model, modes, applied_force=(0.5, 0.0, -0.2))


def test_site_motion_gathered_from_fft_equals_direct_mode_sum(hot):
    # Two routes to u_n(t): inverse FFT of the whole lattice then gather, and the O(C N) direct
    # sum at the stencil's (unwrapped) cells; rounding of an N = 216 sum of O(0.1 Å) terms: 1e-12.
    position = jnp.array([7.1, -2.2, 10.4])  # several cells away: wrapped indices
    cells = hot.model.site_cells(position)
    direct_u, direct_v = hot.modes.site_motion(cells, 0.37)
    u, v = hot.site_motion(position, 0.37)
    np.testing.assert_allclose(u, direct_u, atol=1e-12)
    np.testing.assert_allclose(v, direct_v, atol=1e-11)


def test_force_is_minus_gradient_and_drag_is_h_l_h_of_relative_velocity(hot):
    position, t = jnp.array([1.2, 1.9, 1.4]), 0.21
    mass = hot.model.ion_mass
    u, v = hot.site_motion(position, t)
    # Conservative part: central differences of U(R, u(t)) with u held (h = 1e-4 Å: truncation
    # h^2 U''' ~ 1e-6 meV/Å against forces of ~10 meV/Å).
    still = ColouredNoiseDynamics(hot.model, hot.modes)
    acceleration = eqx.filter_jit(still.acceleration)
    energy = lambda r: hot.model.interaction(r, u)  # noqa: E731
    h = 1e-4
    shifts = h * jnp.eye(3)
    numerical = -(jax.vmap(energy)(position + shifts) - jax.vmap(energy)(position - shifts)) / (2 * h)
    hessian = jax.hessian(energy)(position)
    # acceleration(V) = [F - H L sum_n H_n (V - v_n)] / M: at V = 0 the drag is +H L sum_n H_n v_n.
    drag_at_rest = hessian @ hot.model.loss_tensor @ _sum_site_hessians_times(hot, position, u, v)
    np.testing.assert_allclose(acceleration(t, position, jnp.zeros(3)) * mass,
                               numerical + drag_at_rest, rtol=1e-6, atol=1e-6)
    # Drag: the difference of two velocities sees exactly -H L H dV with H the Hessian of the
    # whole interaction (an independent route to sum_n H_n), to rounding.
    dv = jnp.array([0.3, -1.1, 0.7])
    difference = (acceleration(t, position, dv) - acceleration(t, position, jnp.zeros(3))) * mass
    np.testing.assert_allclose(difference, -hessian @ hot.model.loss_tensor @ hessian @ dv, rtol=1e-9, atol=1e-12)
    # The applied force adds F / M.
    np.testing.assert_allclose((eqx.filter_jit(hot.acceleration)(t, position, dv) - acceleration(t, position, dv)) * mass,
                               hot.applied_force, atol=1e-12)


def _sum_site_hessians_times(dynamics, position, u, v):
    """sum_n H_n v_n with each H_n from jax.hessian of that site's term alone (independent of the code's pass)."""
    model = dynamics.model
    cells = model.site_cells(position)

    def one(cell, u_n, v_n):
        def energy(r):
            separation = model.lattice.spacing * cell + u_n - r
            distance = jnp.sqrt(jnp.sum(separation**2))
            return model.neighbours.weights(distance) * model.potential(separation)
        return jax.hessian(energy)(position) @ v_n

    return jnp.sum(jax.vmap(one)(cells, u, v), axis=0)


def test_zero_temperature_energy_falls_by_the_drag_work():
    # Framework at rest: the ion's energy KE + U(R) falls exactly by int V^T Gamma(R) V dt with
    # Gamma = H L H from the model's Hessian of the total interaction. The integral is a
    # Simpson rule over saves every 2 fs (error ~ 1e-7 relative), the Tsit5 error at dt = 5 fs is
    # ~1e-8 of the energy: tolerance 1e-5 of the dissipated energy.
    model = follow_up_model(4000.0, size=SIZE)
    modes = thermal_modes(model.lattice, SIZE, 0.0, jax.random.key(0))
    dynamics = ColouredNoiseDynamics(model, modes)
    run = run_coloured(dynamics, CENTRE + jnp.array([0.4, -0.2, 0.3]), jnp.array([3.0, 1.0, -2.0]), 1.0, 0.002,
                       save_every=1)
    power = jax.vmap(lambda r, v: v @ model.friction(r) @ v)(run.positions, run.velocities)
    dissipated = _simpson(np.asarray(power), 0.002)
    assert dissipated > 1.0  # the check can fail: several meV are dissipated
    np.testing.assert_allclose(run.energy[0] - run.energy[-1], dissipated, rtol=1e-5)


def test_thermal_sites_energy_balance(hot):
    # With moving sites the ion's energy changes by the sites' work sum_n grad_u U . v_n, the
    # drag's work and the applied force's work; all three integrated along the run (Simpson,
    # saves every 2 fs) must add up to the change, to 1e-5 of the total work exchanged.
    dt = 0.002
    run = run_coloured(hot, CENTRE, jnp.array([2.0, -1.0, 0.5]), 1.0, dt, save_every=1)
    model = hot.model

    def power(t, r, velocity):
        u, v = hot.site_motion(r, t)
        sites = jnp.sum(jax.grad(lambda w: model.interaction(r, w))(u) * v)
        drag_and_field = (hot.acceleration(t, r, velocity) * model.ion_mass + jax.grad(model.interaction)(r, u)) @ velocity
        return sites, drag_and_field

    sites, others = jax.jit(jax.vmap(power))(run.ts, run.positions, run.velocities)
    work_sites, work_others = _simpson(np.asarray(sites), dt), _simpson(np.asarray(others), dt)
    assert abs(work_sites) > 1.0  # the framework does several meV of work: the check can fail
    np.testing.assert_allclose(run.energy[-1] - run.energy[0], work_sites + work_others,
                               atol=1e-5 * (abs(work_sites) + abs(work_others)))


def _simpson(values, dx):
    """Composite Simpson rule over an odd number of equally spaced samples."""
    assert len(values) % 2 == 1
    return dx / 3 * (values[0] + values[-1] + 4 * values[1:-1:2].sum() + 2 * values[2:-1:2].sum())


def test_bad_input_is_refused(hot):
    model = follow_up_model(4000.0, size=8)
    with pytest.raises(ValueError, match="size"):
        ColouredNoiseDynamics(model, hot.modes)
    with pytest.raises(ValueError, match="dt"):
        run_coloured(hot, CENTRE, jnp.zeros(3), 1.0, 0.05)
    with pytest.raises(ValueError, match="applied_force"):
        ColouredNoiseDynamics(hot.model, hot.modes, applied_force=(1.0, 2.0))
    with pytest.raises(ValueError, match="t1"):
        run_coloured(hot, CENTRE, jnp.zeros(3), -1.0, 0.005)
