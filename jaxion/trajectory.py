"""The record of a run, shared by every description: :class:`Trajectory`."""

import equinox as eqx
import jax
import jax.numpy as jnp


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
        conservative: static; ``True`` when ``energy`` should be conserved ("full", "kernel"),
            ``False`` when it decays under drag ("local").

    ``energy_drift`` (a property) is the integration's energy error.
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
    conservative: bool = eqx.field(static=True, default=True)

    @property
    def energy_drift(self):
        """Energy error of the integration, per run (shape of ``t_final``): the largest
        ``|E(t) - E(0)|`` over the reached save times and the end for a conservative description;
        for a dissipative one (drag only removes energy) the largest rise ``max(E(t) - E(0), 0)``."""
        energy = jnp.concatenate([self.energy, self.energy_final[..., None]], axis=-1)
        reached = jnp.concatenate([jnp.isfinite(self.ts), jnp.ones_like(self.t_final, dtype=bool)[..., None]], axis=-1)
        change = energy - self.energy[..., :1]
        change = jnp.abs(change) if self.conservative else jnp.maximum(change, 0.0)
        return jnp.max(jnp.where(reached, change, 0.0), axis=-1)

    def energy_scale(self):
        """``|E(0)|`` per run: what :func:`check_energy_drift` compares the drift with."""
        return jnp.abs(self.energy[..., 0])
