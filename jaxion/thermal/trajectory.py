"""The result every thermal description returns, and the checks on a finished run."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks


class ThermalTrajectory(eqx.Module):
    """An ion trajectory (physical units) saved every ``save_every`` steps; batched runs add a leading axis.

    Attributes:
        ts: ``(T,)`` save times, ps.
        positions: ``(T, 3)`` unwrapped ion positions, Å (the ion may cross many cells).
        velocities: ``(T, 3)`` ion velocities, Å/ps.
        energy: ``(T,)`` the description's energy, meV (conserved by the full description;
            for the time-local ones the ion's kinetic plus landscape energy).
        finite: scalar bool, ``False`` if the state stopped being finite (the arrays then hold
            NaN from that point on; :func:`require_finite` raises on it).
    """

    ts: jax.Array
    positions: jax.Array
    velocities: jax.Array
    energy: jax.Array
    finite: jax.Array


class NonFiniteThermalRunError(FloatingPointError):
    """A thermal run produced NaN or infinite values (a step too large for the forces met)."""


def poison_after_failure(positions, velocities, energy):
    """Whether every saved value is finite, and the arrays with NaN from the first bad save on.

    Shapes ``(T, 3), (T, 3), (T,)``; a run that failed physically must never be averaged in.
    """
    good = jnp.isfinite(energy) & jnp.all(jnp.isfinite(positions), -1) & jnp.all(jnp.isfinite(velocities), -1)
    alive = jnp.cumprod(good.astype(jnp.int32)).astype(bool)
    nan = jnp.nan
    return (jnp.all(alive), jnp.where(alive[:, None], positions, nan), jnp.where(alive[:, None], velocities, nan),
            jnp.where(alive, energy, nan))


def require_finite(trajectory):
    """Raise :class:`NonFiniteThermalRunError` if a concrete (possibly batched) trajectory failed."""
    if _checks.is_concrete(trajectory.finite):
        failed = np.flatnonzero(~np.asarray(trajectory.finite).reshape(-1))
        if failed.size:
            raise NonFiniteThermalRunError(
                f"{failed.size} trajectory(ies) became non-finite (first: index {failed[0]}): the time step is "
                "too large for the forces met; reduce dt"
            )
    return trajectory
