"""The partitioned solvers (jaxion.solvers) through diffrax's public term API: noisy kicks, controls
that are pytrees, and jumps; and the Langevin grid path's times, which are not differentiated.

Independent routes: hand-written loops of the same schemes (plain NumPy-style JAX arithmetic on
the same Brownian increments, read from the same ``VirtualBrownianTree``), diffrax's own Tsit5 on
the first-order field, and the same solve without batching. Small systems (two degrees of
freedom), so the file runs in well under a minute.
"""

import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (enables float64)
from jaxion import full
from jaxion.solvers import BlanesMoan, VelocityVerlet
from jaxion.thermal.langevin import GridBrownianPath

T1, STEPS = 2.0, 40
GRID = jnp.linspace(0.0, T1, STEPS + 1)


def force(q):
    """A nonlinear acceleration ``a(q)``, ``(2,)``."""
    return -jnp.sin(q) - 0.3 * q**3 + jnp.array([0.1, -0.2])


def diffusion(q):
    """A position-dependent noise matrix ``sigma(q)``, ``(2, 2)``."""
    return 0.3 * jnp.array([[1.0 + 0.5 * jnp.cos(q[0]), 0.2 * q[1]], [0.1, 1.0 + 0.2 * q[0] ** 2]])


Y0 = (jnp.array([0.3, -1.0]), jnp.array([0.5, 0.2]))
DRIFT = diffrax.ODETerm(lambda t, p, args: p)


def brownian(seed, dtype=jnp.float64):
    return diffrax.VirtualBrownianTree(0.0, T1, tol=1e-3, shape=jax.ShapeDtypeStruct((2,), dtype),
                                       key=jax.random.key(seed))


def noisy_kick(path):
    """``dp = a(q) dt + sigma(q) dW`` as ``MultiTerm(ODETerm, ControlTerm)``."""
    return diffrax.MultiTerm(diffrax.ODETerm(lambda t, q, args: force(q)),
                             diffrax.ControlTerm(lambda t, q, args: diffusion(q), path))


def solve(kick, solver, y0=Y0, grid=GRID):
    """The solver on ``(DRIFT, kick)`` over the step grid, saving every step."""
    return diffrax.diffeqsolve((DRIFT, kick), solver, grid[0], grid[-1], None, y0,
                               stepsize_controller=diffrax.StepTo(ts=grid), saveat=diffrax.SaveAt(ts=grid),
                               max_steps=len(grid)).ys


def hand_composition(kicks, drifts, path, grid=GRID):
    """The symmetric composition written out step by step in float64: ``p += b_i (h a(q) +
    sigma(q) dW)``, ``q += a_i h p`` with the step's increment ``dW = W(t_k+1) - W(t_k)`` read at
    the ``grid`` times (``path=None``: no noise)."""
    q, p = Y0
    saved = [(q, p)]
    for k in range(STEPS):
        h = jnp.float64(grid[k + 1]) - jnp.float64(grid[k])
        dw = jnp.zeros(2) if path is None else path.evaluate(grid[k], grid[k + 1]).astype(jnp.float64)
        for i, b in enumerate(kicks):
            p = p + b * h * force(q) + b * (diffusion(q) @ dw if path is not None else 0.0)
            if i < len(drifts):
                q = q + drifts[i] * h * p
        saved.append((q, p))
    return tuple(jnp.stack(x) for x in zip(*saved))


@pytest.mark.parametrize("make", [VelocityVerlet, BlanesMoan])
def test_noisy_kick_equals_hand_written_composition(make):
    """A kick ``MultiTerm(ODETerm(a), ControlTerm(sigma, VirtualBrownianTree))``: the solver's
    every step against the composition written out with the same increments (1e-12 over 40 steps
    of O(1) numbers: the same operations grouped differently), the noise free ``ODETerm`` kick
    likewise; the noise moves the state by O(0.1), so it is really applied. Marked as a
    Stratonovich solver, diffrax does not warn about the SDE."""
    solver = make()
    path = brownian(0)
    with warnings.catch_warnings():
        # e.g. "not marked as converging to either the Itô or the Stratonovich solution"
        warnings.simplefilter("error")
        noisy = solve(noisy_kick(path), solver)
    reference = hand_composition(solver.kicks, solver.drifts, path)
    for x, y in zip(noisy, reference):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)
    quiet = solve(diffrax.ODETerm(lambda t, q, args: force(q)), solver)
    for x, y in zip(quiet, hand_composition(solver.kicks, solver.drifts, None)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)
    assert float(jnp.max(jnp.abs(noisy[1] - quiet[1]))) > 0.05


def test_float32_noisy_kick_stays_float32():
    """A float32 state with float32 times and noise stays float32 through the weighted controls,
    and agrees with the hand-written loop in float64 on the same increments to float32 rounding
    (1e-5 over 40 steps of O(1) numbers)."""
    y0 = tuple(x.astype(jnp.float32) for x in Y0)
    path, grid = brownian(1, jnp.float32), GRID.astype(jnp.float32)
    ys = solve(noisy_kick(path), VelocityVerlet(), y0, grid)
    assert all(x.dtype == jnp.float32 for x in ys)
    for x, y in zip(ys, hand_composition((0.5, 0.5), (1.0,), path, grid)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["verlet", "symplectic", "tsit5"])
def test_tuple_controls_of_a_multiterm_kick(name):
    """A kick split into two ODE terms (its control the tuple ``(h, h)``) against the summed
    kick, for a symplectic and the Runge-Kutta-Nystroem solver (1e-13: the two increments are
    added after scaling instead of before)."""
    split = diffrax.MultiTerm(diffrax.ODETerm(lambda t, q, args: -jnp.sin(q)),
                              diffrax.ODETerm(lambda t, q, args: force(q) + jnp.sin(q)))
    whole = diffrax.ODETerm(lambda t, q, args: force(q))
    for x, y in zip(solve(split, full.make_solver(name)), solve(whole, full.make_solver(name))):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-13)


def forced(t, q):
    """``a(t, q)`` with a step in time at ``t = 0.72``: a jump for the step-size controller."""
    return force(q) + jnp.where(t < 0.72, 0.0, 1.5)


def test_jumps_refresh_the_stored_field():
    """A jump (``jump_ts``: a traced ``made_jump``) makes the stored first-same-as-last field
    stale: the Nystroem Tsit5 re-evaluates it and matches diffrax's Tsit5 on the first-order field
    at every step's end (1e-12, rounding of the summation order; a stale field is off by 7e-3),
    alone and vmapped over starts (where the branch becomes a select: same numbers, 1e-13). The
    steps are fixed (``dtmin = dtmax``), clipped at the jump, so both take the same ones. A static
    ``made_jump=True`` with a wrong stored field gives the fresh run exactly."""
    controller = diffrax.PIDController(rtol=1e3, atol=1e3, dtmin=0.05, dtmax=0.05, jump_ts=jnp.array([0.72]))
    partitioned = (DRIFT, diffrax.ODETerm(lambda t, q, args: forced(t, q)))
    first_order = diffrax.ODETerm(lambda t, y, args: (y[1], forced(t, y[0])))

    def run(terms, solver, y0):
        return diffrax.diffeqsolve(terms, solver, 0.0, T1, 0.05, y0, stepsize_controller=controller,
                                   saveat=diffrax.SaveAt(steps=True))

    ours, theirs = run(partitioned, full.make_solver("tsit5"), Y0), run(first_order, diffrax.Tsit5(), Y0)
    assert int(ours.stats["num_accepted_steps"]) == int(theirs.stats["num_accepted_steps"]) == 41
    assert np.any(np.abs(np.asarray(ours.ts) - 0.72) < 1e-12)  # diffrax steps to just before the jump
    for x, y in zip(ours.ys, theirs.ys):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)
    starts = jax.tree.map(lambda x: jnp.stack([x, 0.5 * x]), Y0)
    batched = jax.vmap(lambda y0: run(partitioned, full.make_solver("tsit5"), y0).ys)(starts)
    alone = run(partitioned, full.make_solver("tsit5"), jax.tree.map(lambda x: x[1], starts)).ys
    for x, y in zip(batched, alone):
        np.testing.assert_allclose(x[1], y, rtol=0, atol=1e-13)

    kick = diffrax.ODETerm(lambda t, q, args: force(q))
    saveat = diffrax.SaveAt(ts=GRID)
    for solver in (VelocityVerlet(), full.make_solver("tsit5")):
        fresh = diffrax.diffeqsolve((DRIFT, kick), solver, 0.0, T1, 0.05, Y0, saveat=saveat).ys
        stale = diffrax.diffeqsolve((DRIFT, kick), solver, 0.0, T1, 0.05, Y0, saveat=saveat,
                                    solver_state=jnp.full(2, 7.0), made_jump=True).ys
        for x, y in zip(fresh, stale):
            np.testing.assert_array_equal(x, y)


def test_grid_path_times_are_not_differentiated():
    """The Langevin grid path's increments are draws, not functions of their times: a derivative
    through the times raises (as through diffrax's own paths), one through anything else sees the
    draw as a constant (``d sum(x W) / dx = sum W``, 1e-15)."""
    path = GridBrownianPath((3,), jax.random.key(0), 0.1)
    with pytest.raises(ValueError, match="cannot be differentiated"):
        jax.grad(lambda t: path.evaluate(t, t + 0.1).sum())(0.1)
    gradient = jax.grad(lambda x: (x * path.evaluate(0.1, 0.2)).sum())(2.0)
    np.testing.assert_allclose(gradient, path.evaluate(0.1, 0.2).sum(), rtol=1e-15)
