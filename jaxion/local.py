"""The time-local equation of motion (physics.md section 4, Eq. 26): the ion alone.

At low speed the framework's response splits into an adiabatic part, which softens the
potential, and an instantaneous dissipative part, a drag tensor. The ion then obeys

    (mu / 4 pi^2) sigma'' = -grad Phi_eff(sigma) - H(sigma) M H(sigma) sigma'
    Phi_eff(sigma)        = Phi(0, sigma) - c g(sigma)^T G g(sigma),   g = grad_rho Phi(0, sigma)

with ``H`` the Hessian of ``Phi(0, sigma)``, ``M`` the recoil matrix (Eq. 23) and ``G`` the static
Green's function between the interacting sites. ``c = 1/2`` is the Born-Oppenheimer energy of the
statically relaxed framework; the code published with the paper used ``c = 1``. The tests settle
it: against the exact static relaxation of a periodic lattice, -grad Phi_eff with ``c = 1/2``
matches the force on the ion up to O(Phi0^3) (relative error 2e-6 at Phi0 = 0.1), while ``c = 1``
errs by O(Phi0^2), as much as no softening at all (4e-4); and on the Fig. 6 ion's first bounce
``c = 1/2`` tracks the full lattice six times more closely than ``c = 1``.
Mass ``inf`` on an axis pins the ion there (zero acceleration).
"""

import dataclasses
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .dynamics import AbstractDiffraxDynamics, CrossedPlane, run, run_from
from .response import recoil_matrix
from .run_checks import STEPS_PER_RANGE, require_step, run_duration
from .solvers import TABLEAUX, runge_kutta_stability_limit
from .system import System

SOLVERS = {name: solver for name, (solver, _) in TABLEAUX.items()}
# Step bound of an adaptive run (and of a fixed-step run of traced length): only a bound, no memory
# is reserved without reverse-mode AD.
_MAX_STEPS = 1 << 20


class LocalDynamics(AbstractDiffraxDynamics):
    """The ion's time-local dynamics (Eq. 26) with its precomputed ingredients and its solver.

    The state is the flat phase-space point ``(sigma, sigma')`` ``(6,)``.

    Attributes:
        system: the :class:`~jaxion.System`.
        green: ``(S, 3, S, 3)`` static Green's function ``G_ai,bj`` of the interacting sites, or ``None``
            (no softening).
        recoil: ``(3, 3)`` recoil matrix ``M`` (Eq. 23), or ``None`` (no drag).
        c: softening coefficient in ``Phi_eff = Phi(0, sigma) - c g^T G g``.
        site_positions: ``(S, 3)`` equilibrium positions ``x_j`` of the interacting sites.
        acceleration_scale: ``(3,)`` ``4 pi^2 / mu`` per axis (zero on pinned axes).
        solver_name: static, one of ``SOLVERS`` (explicit Runge-Kutta).
        dt: fixed step (periods; a number, traced by the solve), or ``None`` for adaptive steps.
        rtol, atol: static tolerances of the adaptive steps (PID controller).
        max_steps: static step limit, or ``None`` (enough for ``t1 / dt``, or 2^20 adaptive steps).

    ``site_positions`` and ``acceleration_scale`` are loop invariants of the solve, stored so that
    each step does not rebuild them.
    """

    system: System
    green: jax.Array | None
    recoil: jax.Array | None
    c: jax.Array
    site_positions: jax.Array
    acceleration_scale: jax.Array
    dt: float | None
    solver_name: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int | None = eqx.field(static=True)

    def __init__(self, system, *, c=0.5, drag=True, softening=True, size=None, solver="tsit5", dt=None, rtol=1e-8,
                 atol=1e-10, max_steps=None):
        """Precompute ``G`` (infinite lattice if ``size`` is ``None``, else the periodic ``size^dim``
        one) and ``M`` once; ``drag=False`` / ``softening=False`` leave each ingredient out. The
        solver options are those of :func:`simulate`."""
        if not isinstance(system, System):
            raise ValueError(f"system must be a jaxion System, got {type(system).__name__}")
        if size is not None and (int(size) != size or size < 2):
            raise ValueError(f"size must be None (infinite lattice) or an integer >= 2, got {size!r}")
        _check_steps(solver, dt, rtol, atol, max_steps)
        self.system = system
        # Stored as (S, 3, S, 3) ("a i, b j"), the order the force contracts it in.
        self.green = (jnp.transpose(system.lattice.green_function(system.site_cells, size=size), (0, 2, 1, 3))
                      if softening else None)
        self.recoil = recoil_matrix(system.lattice) if drag else None
        self.c = jnp.asarray(c, dtype=float)
        self.site_positions = system.site_positions()
        self.acceleration_scale = 4.0 * jnp.pi**2 * system.inverse_mass
        self.solver_name = solver
        self.dt = None if dt is None else float(dt)  # concrete for the step count; the solve traces it
        self.rtol, self.atol = float(rtol), float(atol)
        self.max_steps = None if max_steps is None else int(max_steps)

    def __check_init__(self):
        _checks.require_finite("softening coefficient c", self.c)

    def site_derivatives(self, sigma):
        """Gradient ``g_j`` ``(S, 3)`` and Hessian ``h_j`` ``(S, 3, 3)`` of each pair term at
        ``r_j = x_j - sigma`` (undisplaced framework), from one forward-over-reverse pass.

        ``g`` is ``grad_rho Phi(0, sigma)``; ``H(sigma) = sum_j h_j``; ``d^2 Phi / d rho_S^2`` is
        block-diagonal with blocks ``h_j``.
        """
        def gradient_twice(r):
            g = jax.grad(self.system.potential)(r)
            return g, g

        hessians, gradients = jax.vmap(jax.jacfwd(gradient_twice, has_aux=True))(self.site_positions - sigma)
        return gradients, hessians

    def effective_potential(self, sigma):
        """``Phi_eff(sigma) = Phi(0, sigma) - c g^T G g`` for one position ``(3,)``; scalar."""
        bare = self.system.interaction(jnp.zeros_like(self.site_positions), sigma)
        if self.green is None:
            return bare
        g, _ = self.site_derivatives(sigma)
        return bare - self.c * jnp.einsum("ai,aibj,bj->", g, self.green, g)

    def softened_force(self, sigma):
        """``-grad Phi_eff`` ``(3,)`` and the site Hessians ``h_j`` ``(S, 3, 3)``.

        With ``dg_j / dsigma = -h_j``: ``grad Phi_eff = -sum_j g_j + 2 c sum_j h_j (G g)_j``.
        The small contractions are written as broadcast products and sums, which XLA fuses into
        a few loops (tiny ``dot`` calls cost more in launch overhead than in arithmetic).
        """
        g, h = self.site_derivatives(sigma)
        force = jnp.sum(g, axis=0)
        if self.green is not None:
            green_g = jnp.sum(self.green * g[None, None], axis=(2, 3))  # (G g)_ai = sum_bj G_ai,bj g_bj
            force = force - 2.0 * self.c * jnp.sum(h * green_g[:, None, :], axis=(0, 2))
        return force, h

    def drag_force(self, site_hessians, sigma_dot):
        """``-H M H sigma'`` ``(3,)`` with ``H = sum_j h_j`` (zero without drag)."""
        if self.recoil is None:
            return jnp.zeros(3)
        hessian = jnp.sum(site_hessians, axis=0)
        velocity_curvature = jnp.sum(hessian * sigma_dot, axis=1)
        return -jnp.sum(hessian * jnp.sum(self.recoil * velocity_curvature, axis=1), axis=1)

    def friction(self, sigma):
        """Drag tensor ``H(sigma) M H(sigma)``, ``(3, 3)`` (zero without drag)."""
        if self.recoil is None:
            return jnp.zeros((3, 3))
        hessian = jnp.sum(self.site_derivatives(sigma)[1], axis=0)
        return hessian @ self.recoil @ hessian

    def dissipation_rate(self, sigma, sigma_dot):
        """Power drained by the drag, ``sigma'^T H M H sigma'`` (scalar)."""
        return sigma_dot @ self.friction(sigma) @ sigma_dot

    def ion_energy(self, sigma, sigma_dot):
        """Ion kinetic energy plus ``Phi_eff`` (decays at the rate :meth:`dissipation_rate`)."""
        return self.system.ion_kinetic_energy(sigma_dot) + self.effective_potential(sigma)

    def vector_field(self, t, state, args):
        """``d/dtau (sigma, sigma') = (sigma', 4 pi^2 mu^-1 [-grad Phi_eff - H M H sigma'])``."""
        sigma, sigma_dot = state
        force, site_hessians = self.softened_force(sigma)
        return sigma_dot, self.acceleration_scale * (force + self.drag_force(site_hessians, sigma_dot))

    def phase_space_field(self, t, state, args):
        """:meth:`vector_field` on the flat state ``(sigma, sigma')`` ``(6,)``, the form the solve
        uses: one array instead of two halves the small operations of each Runge-Kutta stage."""
        return jnp.concatenate(self.vector_field(t, (state[:3], state[3:]), args))

    # ---------------------------------------------------------------- the description's interface

    def initial_state(self, position, velocity, key=None):
        """The flat phase-space point ``(sigma, sigma')`` ``(6,)``, float64 (``key`` unused: no noise)."""
        return jnp.concatenate([jnp.asarray(position, dtype=float), jnp.asarray(velocity, dtype=float)])

    def ion(self, state):
        return state[:3], state[3:]

    def energy(self, state):
        """:meth:`ion_energy` of the flat state ``(6,)``."""
        return self.ion_energy(state[:3], state[3:])

    def observe(self, t, state, args=None):
        """The ion's position and velocity; the energy is added by :meth:`complete`."""
        return dict(position=state[:3], velocity=state[3:])

    def complete(self, ts, saved):
        """The energies of the saved states, vectorised after the run (``inf`` where not reached): the
        energy costs about a force evaluation, cheaper in one batch than at each save inside the loop."""
        reached = jnp.isfinite(ts)
        if ts.shape[0] == 1:  # one state (e.g. the run's end): unbatched
            energy = self.ion_energy(saved["position"][0], saved["velocity"][0])[None]
            return dict(saved, energy=jnp.where(reached, energy, jnp.inf))
        safe = [jnp.where(reached[:, None], saved[name], 0.0) for name in ("position", "velocity")]
        return dict(saved, energy=jnp.where(reached, jax.vmap(self.ion_energy)(*safe), jnp.inf))

    @property
    def conservative(self):
        """``False`` with the drag on (``KE + Phi_eff`` decays), ``True`` without."""
        return self.recoil is None

    def terms(self, key=None):
        return diffrax.ODETerm(self.phase_space_field)

    def solver(self):
        return SOLVERS[self.solver_name]()

    def step_control(self, t1):
        """Adaptive (PID on ``rtol``, ``atol``) without ``dt``, else constant steps; ``max_steps`` a power
        of two (only a bound: no memory is reserved without reverse-mode AD, and runs of similar
        length share one compilation), or the ``max_steps`` field."""
        if self.dt is None:
            controller, steps = diffrax.PIDController(rtol=self.rtol, atol=self.atol), _MAX_STEPS
        else:
            controller = diffrax.ConstantStepSize()
            steps = 1 << (math.ceil(float(t1) / self.dt) + 1).bit_length() if _checks.is_concrete(t1) else _MAX_STEPS
        return self.dt, controller, steps if self.max_steps is None else self.max_steps

    @classmethod
    def precheck(cls, system, position, velocity, duration, *, dt=None, solver="tsit5", **options):
        """A fixed ``dt`` against the forces met (:func:`check_step`), before the Green's function is built."""
        if dt is not None and solver in SOLVERS:
            _checks.require_positive("dt", dt)
            _require_local_step(system, position, velocity, duration, dt, solver)

    def check(self, position, velocity, duration):
        """A fixed ``dt`` against the forces met (:func:`check_step`), and a framework that the
        interaction makes unstable at the start (:func:`_require_stable`)."""
        if self.dt is not None:
            _require_local_step(self.system, position, velocity, duration, self.dt, self.solver_name)
        _require_stable(self, position)


def _check_steps(solver, dt, rtol, atol, max_steps):
    """``ValueError`` for bad solver options of :class:`LocalDynamics`."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {tuple(SOLVERS)}, got {solver!r}")
    _checks.require_positive("rtol", rtol)
    _checks.require_positive("atol", atol)
    if dt is not None:
        _checks.require_positive("dt", dt)
        if not _checks.is_concrete(dt):
            raise ValueError("dt must be a concrete number (it sizes the run); vmap over the state")
    if max_steps is not None:
        _checks.require_integer("max_steps", max_steps, low=1)


def _with_steps(dynamics, **steps):
    """``dynamics`` (precomputed ingredients kept) with other solver options (:func:`integrate`)."""
    options = dict(solver=dynamics.solver_name, dt=dynamics.dt, rtol=dynamics.rtol, atol=dynamics.atol,
                   max_steps=dynamics.max_steps)
    options.update(steps)
    _check_steps(**options)
    fields = dict(solver_name=options["solver"], dt=None if options["dt"] is None else float(options["dt"]),
                  rtol=float(options["rtol"]), atol=float(options["atol"]),
                  max_steps=None if options["max_steps"] is None else int(options["max_steps"]))
    copy = object.__new__(LocalDynamics)  # the precomputed arrays are reused, not rebuilt by __init__
    for field in dataclasses.fields(LocalDynamics):
        object.__setattr__(copy, field.name, fields.get(field.name, getattr(dynamics, field.name)))
    return copy


def _require_stable(dynamics, sigma):
    """``ValueError`` if, at the start, the interaction overwhelms the springs of the relaxed framework.

    The interacting sites, with the rest of the framework relaxed, have stiffness ``G^-1``; the
    interaction adds its curvature ``A = d^2 Phi / d rho_S^2``. Stability needs ``G^-1 + A`` positive
    definite, checked as ``1 + G^1/2 A G^1/2`` (defined also when a finite lattice's ``G`` is singular).
    Needs the Green's function, so it runs only with the softening on.
    """
    if dynamics.green is None or not _checks.is_concrete(dynamics, sigma):
        return
    n = dynamics.green.shape[0] * 3
    green = np.asarray(dynamics.green).reshape(n, n)
    values, vectors = np.linalg.eigh(0.5 * (green + green.T))
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    curvature = jax.scipy.linalg.block_diag(*dynamics.site_derivatives(sigma)[1])  # d^2 Phi / d rho_S^2
    smallest = np.min(np.linalg.eigvalsh(np.eye(n) + root @ np.asarray(curvature) @ root))
    if smallest <= 0.0:
        raise ValueError(
            "the interaction makes the framework unstable at the starting position: the relaxed sites' "
            f"stiffness G^-1 + d2Phi/drho2 is not positive definite (smallest eigenvalue of "
            f"1 + G^1/2 Phi'' G^1/2 is {smallest:.3g}); the time-local description needs a weaker or "
            "smoother potential (smaller phi0 or larger width) or stiffer springs"
        )


def integrate(dynamics, position, velocity, t1, *, stop_z=None, dt=None, rtol=1e-8, atol=1e-10,
              solver="tsit5", n_save=200, max_steps=None, progress=False):
    """Integrate Eq. 26 for precomputed :class:`LocalDynamics` with these solver options (see
    :func:`simulate`): :func:`jaxion.dynamics.run` without the start checks. ``t1``, ``stop_z`` and
    ``dt`` are traced by the solve, so runs that differ only in them share one compilation."""
    _require_n_save(n_save)
    dynamics = _with_steps(dynamics, solver=solver, dt=dt, rtol=rtol, atol=atol, max_steps=max_steps)
    stop = None if stop_z is None else CrossedPlane(stop_z)
    return run(dynamics, dynamics.initial_state(position, velocity), t1, saveat=int(n_save), stop=stop,
               progress=progress)


def _require_n_save(n_save):
    if int(n_save) != n_save or n_save < 2:
        raise ValueError(f"n_save must be an integer >= 2, got {n_save!r}")


def _require_local_step(system, position, velocity, duration, dt, solver):
    """:func:`check_step` for a straight-path ``duration``."""
    bound = runge_kutta_stability_limit(solver)
    require_step(system, position, velocity, duration, float(dt), bound, f"the local method (solver={solver!r})",
                 per_range=STEPS_PER_RANGE)


def check_step(system, position, velocity, t1, *, stop_z=None, dt=None, solver="tsit5", **_):
    """For a fixed ``dt`` and a concrete start, ``ValueError`` when the step cannot follow the forces met
    (:func:`jaxion.run_checks.require_step`): the ion's frequency in the pair curvature against the
    Runge-Kutta method's stability bound on the imaginary axis, and ``STEPS_PER_RANGE`` steps per
    crossing of the potential's range. Adaptive steps (``dt=None``) control their own error."""
    if dt is None or solver not in SOLVERS:
        return
    _checks.require_positive("dt", dt)
    _require_local_step(system, position, velocity, run_duration(position, velocity, t1, stop_z), dt, solver)


def simulate(system, position, velocity, t1, *, stop_z=None, dt=None, rtol=1e-8, atol=1e-10, solver="tsit5",
             n_save=200, c=0.5, drag=True, softening=True, size=None, max_steps=None, progress=False):
    """The ion's trajectory under the time-local equation of motion (Eq. 26): :class:`LocalDynamics`,
    then :func:`jaxion.dynamics.run_from` with ``CrossedPlane(stop_z)``.

    Args:
        system: the :class:`~jaxion.System` (3D framework when ``drag``).
        position, velocity: ``(3,)`` initial ion position and velocity.
        t1: duration (periods).
        stop_z: end the run at the end of the step in which the ion's z coordinate reaches this value.
        dt: fixed step; ``None`` for adaptive steps (PID controller with ``rtol``, ``atol``).
        solver: "tsit5" (default), "dopri5" or "dopri8" (explicit Runge-Kutta).
        n_save: number of equally spaced save times in ``[0, t1]``.
        c: softening coefficient (1/2 = Born-Oppenheimer; 1 = the paper's published code).
        drag: include the drag ``-H M H sigma'``.
        softening: include ``-c g^T G g`` in the potential.
        size: ``None`` for the infinite lattice's Green's function, ``L`` for the periodic ``L^3`` one.
        max_steps: solver step limit (default: enough for ``t1 / dt``, or 2^20 adaptive steps).
        progress: show a progress bar.

    Returns:
        :class:`~jaxion.trajectory.Trajectory`; ``energy`` is ion kinetic energy plus ``Phi_eff``,
        which decays at the rate ``sigma'^T H M H sigma'``.

    Raises:
        ValueError: bad options, a fixed ``dt`` too large for the forces met (:func:`check_step`),
            or a potential that makes the framework unstable at the start (the relaxed
            framework's stiffness is not positive definite).
    """
    _require_n_save(n_save)
    _checks.require_positive("t1", t1)
    check_step(system, position, velocity, t1, stop_z=stop_z, dt=dt, solver=solver)  # before G is built
    dynamics = LocalDynamics(system, c=c, drag=drag, softening=softening, size=size, solver=solver, dt=dt, rtol=rtol,
                             atol=atol, max_steps=max_steps)
    stop = None if stop_z is None else CrossedPlane(stop_z)
    return run_from(dynamics, position, velocity, t1, saveat=int(n_save), stop=stop, progress=progress)
