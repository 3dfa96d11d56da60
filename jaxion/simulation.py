"""One entry point for trajectories, whatever the level of description.

``method`` selects the dynamics:

* ``"full"``: the whole periodic lattice plus the ion (Eqs. 3-4), ``jaxion.full``;
* ``"kernel"``: the lattice integrated out exactly into a memory kernel, ``jaxion.kernel``;
* ``"local"``: the ion alone with softened potential and drag tensor (Eq. 26), ``jaxion.local``.

Each method module provides ``simulate(system, position, velocity, t1, *, stop_z=None, **options)``
returning a :class:`Trajectory`; ``stop_z`` ends the run when the ion's z coordinate reaches it.
"""

import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx

from . import _checks

METHODS = ("full", "kernel", "local")


class FiniteBoxWarning(UserWarning):
    """Sound crossing a finite periodic lattice returns to the ion within the run."""


class Trajectory(eqx.Module):
    """An ion trajectory saved at times ``ts``.

    Attributes:
        ts: ``(T,)`` save times (periods); ``inf`` past an early stop.
        position: ``(T, 3)`` ion position ``sigma``.
        velocity: ``(T, 3)`` ion velocity ``sigma'``.
        energy: ``(T,)`` total energy of the description (conserved for "full" and "kernel",
            decaying under drag for "local").
        site_displacement: ``(T, S, 3)`` displacements of the interacting sites, or ``None``.
        t_final, position_final, velocity_final, energy_final: the state where the run ended
            (at ``t1`` or at the stop).
    """

    ts: jax.Array
    position: jax.Array
    velocity: jax.Array
    energy: jax.Array
    t_final: jax.Array
    position_final: jax.Array
    velocity_final: jax.Array
    energy_final: jax.Array
    site_displacement: jax.Array | None = None


class NonFiniteTrajectoryError(FloatingPointError):
    """An integration produced NaN or infinite values (raised instead of returning them)."""


def require_finite_trajectory(trajectory):
    """Raise :class:`NonFiniteTrajectoryError` if a concrete trajectory (single or batched) has NaN
    or infinite states at its reached save times or at its end; traced trajectories pass through."""
    if not _checks.is_concrete(trajectory):
        return
    reached = np.isfinite(np.asarray(trajectory.ts))
    states = {
        "position": np.asarray(trajectory.position)[reached],
        "velocity": np.asarray(trajectory.velocity)[reached],
        "final position": np.asarray(trajectory.position_final),
        "final velocity": np.asarray(trajectory.velocity_final),
        "final energy": np.asarray(trajectory.energy_final),
    }
    bad = [name for name, value in states.items() if not np.all(np.isfinite(value))]
    if bad:
        ts = np.where(reached, np.asarray(trajectory.ts), np.nan)
        first = np.nonzero(~np.all(np.isfinite(np.asarray(trajectory.position)), axis=-1) & reached)
        when = f" (first at tau = {float(ts[first][0]):.6g})" if first[0].size else ""
        raise NonFiniteTrajectoryError(
            f"the integration produced non-finite values in the {', '.join(bad)}{when}: the ion met a singular "
            "potential (e.g. Yukawa at r = 0: pass beside the sites, not through them), or the time step is too "
            "large for the forces met; use a smaller dt (or an adaptive solver) or a softer potential"
        )


class SinglePass(eqx.Module):
    """Result of the paper's single-pass protocol.

    Attributes:
        speed: initial speed(s) ``v0``.
        loss: ``Delta = mu (v0^2 - v_end^2) / (8 pi^2)``, same shape as ``speed``.
        trajectory: the :class:`Trajectory` (batched over speeds if ``speed`` was an array).
    """

    speed: jax.Array
    loss: jax.Array
    trajectory: Trajectory


def _method_module(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return importlib.import_module(f"jaxion.{method}")


def simulate(system, position, velocity, t1, method="full", **options):
    """Integrate the ion's motion from ``position``, ``velocity`` (each ``(3,)``) for ``t1`` periods.

    Options are passed to the method (see ``jaxion.full.simulate`` etc.: ``size``, ``dt``,
    ``solver``, ``n_save``, ...). Returns a :class:`Trajectory`.
    """
    position = jnp.asarray(position, dtype=float)
    velocity = jnp.asarray(velocity, dtype=float)
    _checks.require_shape("position", position, (3,))
    _checks.require_shape("velocity", velocity, (3,))
    _checks.require_finite("position", position)
    _checks.require_finite("velocity", velocity)
    _checks.require_positive("t1", t1)
    trajectory = _method_module(method).simulate(system, position, velocity, t1, **options)
    require_finite_trajectory(trajectory)
    return trajectory


def pass_geometry(system, start, margin=7.0):
    """Start and end of a single pass along z (physics.md section 3).

    The ion starts ``margin * range`` before the lowest plane of interacting sites and stops
    ``margin * range`` past the highest one, at transverse position ``start = (x, y)``.

    Returns:
        ``(initial_position (3,), stop_z)``.
    """
    z = system.site_positions()[:, 2]
    reach = margin * system.potential.range
    start = jnp.asarray(start, dtype=float)
    _checks.require_shape("start", start, (2,))
    return jnp.concatenate([start, (jnp.min(z) - reach)[None]]), jnp.max(z) + reach


def _require_path_clear(system, position):
    """``ValueError`` if the straight path runs through a site where the pair potential is infinite
    (e.g. Yukawa at ``r = 0``): no finite speed passes it, and time steps would skip over it."""
    if not _checks.is_concrete(system, position):
        return
    at_contact = np.asarray(system.potential(jnp.zeros(3)))
    offsets = np.asarray(system.site_positions()[:, :2] - position[:2])
    hit = np.all(offsets == 0.0, axis=1)
    if np.any(hit) and not np.isfinite(at_contact):
        raise ValueError(
            f"the straight path at start={tuple(np.asarray(position[:2]).tolist())} runs through the interacting "
            f"site(s) {np.asarray(system.sites)[hit].tolist()}, where the pair potential is infinite; start the "
            "pass with a transverse offset"
        )


def single_pass(system, speed, start=(0.0, 0.0), method="full", margin=7.0, slowdown=4.0, **options):
    """The paper's single-pass loss: ion starts ``margin`` ranges before the interacting sites with
    speed ``v0`` along z, stops ``margin`` ranges past them; ``Delta = mu_z (v0^2 - v_end^2) / 8 pi^2``.

    Args:
        system: the :class:`~jaxion.System`; its z axis must be mobile.
        speed: scalar or ``(K,)`` speeds; a batch runs as one vectorised computation.
        start: transverse position ``(x, y)`` of the straight path.
        method: "full", "kernel" or "local".
        margin: start/stop distance in units of the potential's range.
        slowdown: the run is given ``slowdown`` times the straight-line crossing time before it
            is declared stuck (a trapped ion gives a ``nan``-free but meaningless loss; check
            ``trajectory.t_final``).
        **options: passed to the method.
    """
    speed = jnp.asarray(speed, dtype=float)
    _checks.require_positive("speed", speed)
    if _checks.is_concrete(system.mass) and np.isinf(np.asarray(system.mass)[2]):
        raise ValueError("single_pass moves the ion along z, but the ion's z mass is infinite (pinned)")
    position, stop_z = pass_geometry(system, start, margin)
    _require_path_clear(system, position)
    slowest = float(np.min(np.asarray(speed))) if _checks.is_concrete(speed) else None
    if slowest is None:
        raise ValueError("single_pass needs concrete speeds to size the run; vmap over it with jax.vmap on simulate")
    # the duration only sizes the run: no derivative flows through it (width, spacing may be traced)
    t1 = slowdown * float(jax.lax.stop_gradient(stop_z - position[2])) / slowest
    module = _method_module(method)

    def run(v0):
        velocity = jnp.array([0.0, 0.0, 1.0]) * v0
        return module.simulate(system, position, velocity, t1, stop_z=stop_z, **options)

    # The run length t1 is only an upper bound (slowdown x the crossing time of the slowest ion); a
    # method with a finite box warns about returning sound from the runs' actual durations instead.
    check_sound_return = getattr(module, "check_sound_return", None)
    with warnings.catch_warnings():
        if check_sound_return is not None:
            warnings.simplefilter("ignore", FiniteBoxWarning)
        trajectory = run(speed) if speed.ndim == 0 else jax.vmap(run)(speed)
    require_finite_trajectory(trajectory)
    if check_sound_return is not None and _checks.is_concrete(trajectory.t_final):
        check_sound_return(system, float(jnp.max(trajectory.t_final)), **options)
    v_end = trajectory.velocity_final
    initial_kinetic = system.ion_kinetic_energy(jnp.stack([jnp.zeros_like(speed)] * 2 + [speed], axis=-1))
    loss = initial_kinetic - system.ion_kinetic_energy(v_end)
    return SinglePass(speed=speed, loss=loss, trajectory=trajectory)
