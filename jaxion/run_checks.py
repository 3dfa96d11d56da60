"""What a description checks about a run, below the protocols (``jaxion.simulation``).

The descriptions (``jaxion.full``, ``jaxion.kernel``, ``jaxion.local``) import these; the protocols
re-export them, so ``jaxion.simulation.<name>`` keeps working:

* the straight-path duration of a run (:func:`run_duration`) and the pass geometry
  (:func:`pass_geometry`, :func:`pass_barrier`) the checks size themselves with;
* the step check against the forces met (:func:`require_step`, :func:`curvature_met`,
  ``STEPS_PER_RANGE``);
* the box warning (:class:`FiniteBoxWarning`, its default tolerance ``BOX_TOL``, the box a run
  needs, :func:`holding_size`) and the precision a loss needs (``RESOLVED_ULPS``).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .response import max_sound_speed

# A single-pass loss below this many units of rounding of the initial kinetic energy is not resolved.
RESOLVED_ULPS = 100.0
# single_pass warns (FiniteBoxWarning) when sound returning through the periodic box changes a loss by
# more than this fraction of it (jaxion.finite_box.check_sound_return); box_tol changes it, None silences it.
BOX_TOL = 1e-3
# Steps per range crossing below which a fixed step cannot follow the force pulse (local and kernel).
STEPS_PER_RANGE = 4


class FiniteBoxWarning(UserWarning):
    """Sound crossing a finite periodic lattice returns to the ion within the run."""


def curvature_met(system, position, velocity, duration, points=257):
    """Largest pair-potential curvatures along the straight path ``position + velocity t``,
    ``0 <= t <= duration`` (concrete inputs; ``None`` when traced).

    Returns:
        ``(site, ion)``: the largest ``|eigenvalue|`` of one pair term's Hessian (what an
        interacting site feels) and of their sum ``H(sigma)`` (what the ion feels).
    """
    if not _checks.is_concrete(system, position, velocity, duration):
        return None
    t = jnp.linspace(0.0, float(duration), points)[:, None]
    sigma = jnp.asarray(position, dtype=float) + t * jnp.asarray(velocity, dtype=float)
    return tuple(float(value) for value in _curvatures(system, sigma))


@eqx.filter_jit
def _curvatures(system, sigma):
    """Largest ``|eigenvalue|`` of the pair Hessians and of their sum over the sites, at ``sigma (P, 3)``."""
    separations = system.site_positions()[None, :, :] - sigma[:, None, :]  # (P, S, 3)
    pair = jax.vmap(jax.vmap(jax.hessian(system.potential)))(separations)  # (P, S, 3, 3)
    site = jnp.max(jnp.abs(jnp.linalg.eigvalsh(pair)))
    ion = jnp.max(jnp.abs(jnp.linalg.eigvalsh(jnp.sum(pair, axis=1))))
    return site, ion


def holding_size(lattice, duration):
    """The smallest periodic box (cells per axis) that holds a run of ``duration`` periods, as advice
    text: no sound leaving the sites at :func:`~jaxion.response.max_sound_speed` returns before the end."""
    needed = int(math.ceil(duration * max_sound_speed(lattice) / float(lattice.spacing))) + 1
    return f"size >= {needed} would be enough (no sound returns before the run ends)"


def run_duration(position, velocity, t1, stop_z=None):
    """The straight-path duration of a run: ``t1``, or the time to reach ``stop_z`` if shorter
    (:meth:`jaxion.dynamics.CrossedPlane.duration` for the plane along z)."""
    duration = float(t1)
    if stop_z is not None and _checks.is_concrete(position, velocity, stop_z) and float(velocity[2]) > 0:
        duration = min(duration, (float(stop_z) - float(position[2])) / float(velocity[2]))
    return duration


def require_step(system, position, velocity, duration, dt, bound, what, lattice_omega=None, per_range=None):
    """``ValueError`` when a fixed step ``dt`` cannot follow the forces the run meets (concrete inputs).

    * stability: ``2 pi omega dt < bound`` with ``omega^2 = max(lattice_omega^2 + c_site / m,
      c_ion / mu_min)``, the highest frequency of the framework's sites (left out when
      ``lattice_omega`` is ``None``: the ion alone is integrated) and of the ion, including the
      pair curvatures met along the straight path (:func:`curvature_met`);
    * resolution (if ``per_range``): at least ``per_range`` steps per crossing of the potential's
      range at the starting speed, ``dt |v| <= range / per_range``.
    """
    curvature = curvature_met(system, position, velocity, duration)
    if curvature is None:
        return
    site, ion = curvature
    mobile = np.asarray(system.mass)[np.isfinite(np.asarray(system.mass))]
    sites = 0.0 if lattice_omega is None else lattice_omega**2 + site / float(system.lattice.mass)
    omega = math.sqrt(max(sites, ion / float(np.min(mobile))))
    if 2.0 * math.pi * omega * dt >= bound:
        lattice = "" if lattice_omega is None else f"of the lattice ({lattice_omega:.4g}) "
        raise ValueError(
            f"dt={dt:g} is too large for {what} with the forces met: the highest frequency {lattice}with the "
            f"ion-site curvature along the path (sites {site:.3g}, ion {ion:.3g}) is omega={omega:.4g}, and the "
            f"step is stable only for 2 pi omega dt < {bound:.3g}, i.e. dt < {bound / (2.0 * math.pi * omega):.3g}"
        )
    speed = float(np.linalg.norm(np.asarray(velocity)))
    reach = float(system.potential.range)
    if per_range is not None and dt * speed > reach / per_range:
        raise ValueError(
            f"dt={dt:g} is too large for {what}: at speed {speed:.3g} the ion crosses the potential's range "
            f"({reach:.3g}) in {reach / speed:.3g} periods, and the force pulse needs at least {per_range} steps "
            f"per range, i.e. dt <= {reach / (per_range * speed):.3g}"
        )


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


def pass_barrier(system, start, points=401):
    """The largest potential ``max_z Phi(0, (x, y, z))`` of the undisplaced framework on the straight
    pass at ``start = (x, y)`` (:func:`pass_geometry`), sampled at ``points`` evenly spaced ``z``."""
    position, stop_z = pass_geometry(system, start)
    z = jnp.linspace(position[2], stop_z, points)
    path = jnp.concatenate([jnp.broadcast_to(position[:2], (z.shape[0], 2)), z[:, None]], axis=1)
    return jnp.max(system.static_potential(path))
