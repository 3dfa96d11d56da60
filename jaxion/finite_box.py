"""How much the sound returning through a periodic box changes a single-pass loss (a protocol check).

A finite description (the full lattice in a periodic ``L^dim`` box, or the kernel of that box) lets
the sound the ion radiates go round the box and come back to the sites. Whether that matters for a
single pass is a question of the perturbative theory (Eq. 13): the loss summed over the box's
``L^dim`` wave vectors against the zone integral of the infinite lattice
(:func:`finite_box_change`). ``jaxion.single_pass`` asks it after its runs, for every description
that declares a periodic box (:attr:`jaxion.dynamics.AbstractDynamics.periodic_size`), through
:func:`check_sound_return`. This module sits above the descriptions and the theory: it imports
:mod:`jaxion.dissipation`, never the other way round.
"""


import jax.numpy as jnp
import numpy as np

from . import _checks
from .dissipation import loss_perturbative
from .response import max_sound_speed
from .run_checks import BOX_TOL, RESOLVED_ULPS, FiniteBoxWarning, holding_size, pass_barrier, pass_geometry

# Speeds per evaluation of the finite-box estimate (a fixed shape: one compilation for all calls).
_ECHO_CHUNK = 4


def finite_box_change(system, speed, start, size):
    """Relative change of the single-pass loss made by the periodic box of ``size`` cells, to second
    order in the interaction:

        Delta_L / Delta_inf - 1,

    ``Delta_L`` the mode sum of Eq. 13 over the box's ``L^dim`` wave vectors and ``Delta_inf`` its
    zone integral (:func:`jaxion.dissipation.loss_perturbative` with ``size=L`` and ``size=None``).
    Their difference is the sound that leaves the sites, goes round the box and comes back while the
    ion still pushes on them (the sites' periodic images). The full simulation's loss departs from
    Eq. 13 at higher order too (~1% at the paper's Phi0 = 0.01), but that part is common to both boxes.
    Validated against full-lattice single passes in ``tests/test_first_hour.py``.

    Args:
        system: the :class:`~jaxion.System` (concrete).
        speed: ``(K,)`` speeds along z; start: ``(2,)`` transverse position of the path.
        size: ``L``.

    Returns:
        ``(relative (K,), Delta_L (K,), Delta_inf (K,))`` NumPy arrays.
    """
    speed = jnp.atleast_1d(jnp.asarray(speed, dtype=float))
    in_box = np.asarray(loss_perturbative(system, speed, start, size=int(size)))
    infinite = np.asarray(loss_perturbative(system, speed, start))
    with np.errstate(divide="ignore", invalid="ignore"):
        return in_box / infinite - 1.0, in_box, infinite


def check_sound_return(system, speed, start=(0.0, 0.0), size=32, *, durations=None, box_tol=BOX_TOL):
    """Warn (:class:`~jaxion.run_checks.FiniteBoxWarning`), once for all speeds, when the sound that
    returns through the periodic box of ``size`` cells changes a single-pass loss by more than
    ``box_tol`` of it (default ``BOX_TOL`` = 1e-3), saying by how much; ``box_tol=None`` silences it.

    A speed is checked when its pass lasts long enough for sound to go round the box,
    ``c_s * duration > L alpha`` (``durations`` per speed, default the straight crossing of
    :func:`~jaxion.run_checks.pass_geometry`; ``single_pass`` passes the runs' actual ones).
    Only then is the change estimated, by :func:`finite_box_change` at the initial speed ``v``
    and at the slowest speed on the path, ``v_min^2 = v^2 - 8 pi^2 B / mu_z`` (``B`` the barrier,
    :func:`~jaxion.run_checks.pass_barrier`): the ion meets the sites at speeds between the two,
    and the larger ``|change|`` counts. A change counts when it exceeds both ``box_tol`` of the loss
    and what the run resolves, ``RESOLVED_ULPS`` float64 roundings of the ion's kinetic energy (an
    exponentially small loss, e.g. a gapped chain at low speed, is left alone). Passes the ion cannot
    complete (``B`` above its kinetic energy) are not checked.

    Where the speed changes much inside the potential the simulated loss departs from Eq. 13 and
    the estimate is an order of magnitude: on the 64-mass chain (Phi0 = 0.01, lambda = 1) it gives
    5.1% at v = 2, 0.17% at 2.5, -0.023% at 3 against the simulations' 36%, 0.10%, -0.021%
    (L = 64 against 256); in the perturbative regime it agrees to a few per cent of itself.

    Args:
        system: the :class:`~jaxion.System`; skipped when traced.
        speed: scalar or ``(K,)`` initial speeds along z; start: ``(2,)`` transverse position.
        size: ``L``; durations: scalar or ``(K,)`` run lengths in periods.
        box_tol: relative tolerance, or ``None``.
    """
    if box_tol is None or not _checks.is_concrete(system, speed, durations):
        return
    _checks.require_positive("box_tol", box_tol)
    speed = np.atleast_1d(np.asarray(speed, dtype=float))
    if durations is None:
        position, stop_z = pass_geometry(system, start)
        durations = float(stop_z - position[2]) / speed
    durations = np.broadcast_to(np.asarray(durations, dtype=float), speed.shape)
    kinetic = np.asarray(system.ion_kinetic_energy(np.stack([0.0 * speed] * 2 + [speed], axis=-1)))
    barrier = max(float(pass_barrier(system, start)), 0.0)
    box = size * float(system.lattice.spacing)
    checked = (durations * max_sound_speed(system.lattice) > box) & (kinetic > barrier)
    if not np.any(checked):
        return
    v, slowest = speed[checked], speed[checked] * np.sqrt(1.0 - barrier / kinetic[checked])
    # in chunks of _ECHO_CHUNK speeds (the last padded with its last speed): every call shares one
    # compiled pair of mode sums, whatever the number of speeds checked
    both = np.concatenate([v, slowest])
    chunks = np.resize(both, -(-both.size // _ECHO_CHUNK) * _ECHO_CHUNK)
    chunks[both.size :] = both[-1]
    parts = [finite_box_change(system, chunk, start, size) for chunk in chunks.reshape(-1, _ECHO_CHUNK)]
    relative, in_box, infinite = (np.concatenate(x)[: both.size].reshape(2, -1) for x in zip(*parts))
    pick = np.argmax(np.abs(np.nan_to_num(relative, nan=np.inf)), axis=0)
    relative, change = (np.take_along_axis(x, pick[None], 0)[0] for x in (relative, in_box - infinite))
    resolved = np.abs(change) > RESOLVED_ULPS * np.finfo(float).eps * kinetic[checked]
    beyond = resolved & ~(np.abs(relative) <= box_tol)
    if not np.any(beyond):
        return
    worst = int(np.argmax(np.where(beyond, np.abs(np.nan_to_num(relative, nan=np.inf)), -1.0)))
    _checks.warn(
        f"sound crossing the periodic box of {size} cells returns to the sites while the ion still "
        f"interacts with them: the box changes the single-pass loss by {relative[worst]:+.2%} at v = {v[worst]:.3g} "
        f"(second-order estimate against the infinite lattice, at v and at the slowest speed on the path, "
        f"{slowest[worst]:.3g}; finite_box_change), beyond box_tol={box_tol:g} at {int(np.sum(beyond))} of "
        f"{speed.size} speeds (v = {', '.join(f'{x:.3g}' for x in v[beyond])}). A larger box reduces it; "
        f"{holding_size(system.lattice, float(np.max(durations[checked][beyond])))}. box_tol=None silences this check.",
        FiniteBoxWarning)
