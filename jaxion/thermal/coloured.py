"""Coloured-noise time-local description (physics.md 5.3): thermal sites, drag on the relative velocity.

No random force is drawn. The framework sites carry the thermal motion ``u_n(t)`` of a sampled
normal-mode state (:class:`~jaxion.thermal.modes.ThermalModes`), and the ion obeys

    M R'' = -grad_R [ U(R, u(t)) + Delta(R) ] + F_ext - H L sum_n H_n (R' - u_n'(t)),

over the sites of the neighbour stencil around ``R``: ``U(R, u) = sum_n s phi(x_n + u_n - R)``,
``H_n`` the Hessian of site ``n``'s (switched) pair term at its displaced position,
``H = sum_n H_n``, ``L`` the loss tensor (Eq. 27) and ``Delta(R)`` the static relaxation of the
framework (``landscape.energy - model.rigid_energy``: the softening; with the relaxed landscape
this is the exact Born-Oppenheimer value, the c = 1/2 of section 4; the follow-up paper's code
used twice the linear-response correction). The random force has the phonon band's correlation
time and tends to the white-noise Langevin equation (5.2) when that is short compared with the
ion's motion. At zero temperature the sites are at rest and this is the deterministic time-local
equation of motion.

:class:`ColouredNoiseDynamics` is a description of :mod:`jaxion.dynamics`
(:mod:`jaxion.thermal.trajectory`): built with a step ``dt`` (ps), ``jaxion.dynamics.run(dynamics,
(R, V), t1, saveat=..., stop=...)`` integrates it as :func:`run_coloured` does (Tsit5, steps of at
most ``dt``), returning a :class:`~jaxion.trajectory.Trajectory`; no key is needed (the thermal
motion is the sampled modes'). Its energy depends on the time through the sites' motion:
``energy(state, t)``, and the saves' energies are taken at their times.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from .model import IonInFramework
from .trajectory import AbstractTimeLocalDynamics, ThermalTrajectory, poison_after_failure, step_option

# Largest omega * dt accepted for the fixed-step Runge-Kutta solve (phonon forcing and ion well).
MAX_PHASE_PER_STEP = 0.5
# The error control may take at most this many steps per step of the nominal dt.
MAX_STEP_FACTOR = 16


class ColouredNoiseDynamics(AbstractTimeLocalDynamics):
    """The ion driven by thermal sites (physics.md 5.3), a description of :mod:`jaxion.dynamics`.

    Attributes:
        model: the :class:`IonInFramework` (its neighbour stencil's ``size`` must be the modes' box).
        modes: the sampled thermal state of the framework (``ThermalModes``).
        landscape: optional landscape (``AbstractLandscape``) whose ``correction`` (its difference
            from the rigid one) softens the interaction; ``None`` for no softening.
        applied_force: ``(3,)`` constant external force on the ion, meV/Å (drift mobility).
        dt: the largest step (ps; a Python float) of runs through :func:`jaxion.dynamics.run`, or
            ``None`` (:func:`run_coloured` takes its own).
        tolerance: static; the error control's relative and absolute tolerance (Å, Å/ps) of those runs.

    The state is ``(R (3,), V (3,))``; the energy is not conserved (``conservative`` is ``False``):
    the moving sites do work on the ion and the drag takes it.
    """

    model: IonInFramework
    modes: eqx.Module
    landscape: eqx.Module | None
    applied_force: jax.Array
    dt: float | None
    tolerance: float = eqx.field(static=True)

    def __init__(self, model, modes, landscape=None, applied_force=(0.0, 0.0, 0.0), *, dt=None, tolerance=1e-6):
        if not isinstance(model, IonInFramework):
            raise ValueError(f"model must be an IonInFramework, got {type(model).__name__}")
        if model.size != modes.size:
            raise ValueError(
                f"the model's periodic box (size={model.size}) must be the thermal modes' box (size={modes.size}): "
                "build the model with size=modes.size"
            )
        self.model, self.modes, self.landscape = model, modes, landscape
        self.applied_force = jnp.asarray(applied_force, dtype=float)
        self.dt = step_option(dt)
        _checks.require_positive("tolerance", tolerance)
        self.tolerance = float(tolerance)

    def __check_init__(self):
        _checks.require_shape("applied_force", self.applied_force, (3,))
        _checks.require_finite("applied_force", self.applied_force)

    def site_motion(self, position, t):
        """Thermal displacements and velocities ``(C, 3)`` of the sites around ``position`` at ``t``.

        The whole lattice's field is evaluated by FFT (``O(N log N)``) and the stencil gathered
        from it, cheaper than the direct mode sum (``O(C N)``) for the ~90-site stencil.
        """
        index = tuple(self.model.neighbours.lattice_index(self.model.site_cells(position)).T)
        return self.modes.displacements(t)[index], self.modes.velocities(t)[index]

    def softening(self, position):
        """``Delta(R)``: relaxation energy of the framework, meV (zero without a landscape)."""
        if self.landscape is None:
            return jnp.zeros(())
        return self.landscape.correction(position)

    def potential_energy(self, position, t):
        """``U(R, u(t)) + Delta(R)``, meV."""
        displacement, _ = self.site_motion(position, t)
        return self.model.interaction(position, displacement) + self.softening(position)

    def _site_terms(self, position, displacement):
        """The rigid force ``-grad_R U(R, u)`` ``(3,)`` and the sites' pair Hessians ``H_n (C, 3, 3)``,
        from one forward-over-reverse pass per site (``d/dR = -d/dr``)."""
        model = self.model
        separations = model.lattice.spacing * model.site_cells(position) - position + displacement

        def pair(r):
            return model.neighbours.weights(jnp.sqrt(jnp.sum(r**2))) * model.potential(r)

        def gradient_twice(r):
            gradient = jax.grad(pair)(r)
            return gradient, gradient

        hessians, gradients = jax.vmap(jax.jacfwd(gradient_twice, has_aux=True))(separations)
        return jnp.sum(gradients, axis=0), hessians

    def acceleration(self, t, position, velocity):
        """``R''`` in Å/ps^2 at time ``t`` (ps)."""
        displacement, site_velocity = self.site_motion(position, t)
        force, hessians = self._site_terms(position, displacement)
        if self.landscape is not None:
            force = force - jax.grad(self.softening)(position)
        relative = velocity[None, :] - site_velocity
        hessian = jnp.sum(hessians, axis=0)
        drag = -hessian @ self.model.loss_tensor @ jnp.einsum("nij,nj->i", hessians, relative)
        return (force + self.applied_force + drag) / self.model.ion_mass

    def energy(self, state, t=0.0):
        """Ion kinetic plus potential energy of ``state = (R, V)`` at time ``t`` (ps; the sites' thermal
        motion depends on it), meV; not conserved: the framework does work."""
        position, velocity = state
        return 0.5 * self.model.ion_mass * jnp.sum(velocity**2) + self.potential_energy(position, t)

    @property
    def conservative(self):
        """``False``: the moving sites and the drag exchange energy with the ion."""
        return False

    def vector_field(self, t, state, args):
        """``(R', V')`` at time ``t``: the ODE of the run."""
        position, velocity = state
        return velocity, self.acceleration(t, position, velocity)

    # -- the interface (jaxion.dynamics) ------------------------------------------------------

    def initial_state(self, position, velocity, key=None):
        """``(R, V)`` (Å, Å/ps); ``key`` is not used (the sites' thermal motion is the sampled modes)."""
        if velocity is None:
            raise ValueError("pass the ion's velocity: the coloured-noise description draws no velocity (its thermal "
                             "motion is the sampled modes'; jaxion.thermal.model.maxwell_velocity draws one)")
        position, velocity = (jnp.asarray(x, dtype=float) for x in (position, velocity))
        for name, value in (("position", position), ("velocity", velocity)):
            _checks.require_shape(name, value, (3,))
            _checks.require_finite(name, value)
        return position, velocity

    def check(self, position, velocity, duration):
        """:meth:`check_step` with the description's ``dt`` at ``position``."""
        self.check_step(self.step(), position)

    def terms(self, key=None):
        """``ODETerm`` of :meth:`vector_field` through a closure: a concrete description's arrays are
        then constants of :func:`run_coloured`'s solve (as they always were; a bound method would
        pass the complex mode amplitudes to diffrax as inputs), a traced one's stay traced."""
        return diffrax.ODETerm(lambda t, state, args: self.vector_field(t, state, args))

    def solver(self):
        return diffrax.Tsit5()

    def step_control(self, t1):
        """``dt0 = dt``, PID control with ``dtmax = dt`` (steps of at most ``dt``), as :func:`run_coloured`."""
        return _step_control(self.step(), self.tolerance, self.n_steps(t1))

    def check_step(self, dt, position):
        """Raise ``ValueError`` unless ``omega dt <= MAX_PHASE_PER_STEP`` for the highest phonon
        frequency (the sites' forcing) and the ion's well at ``position``."""
        phonon = float(jnp.max(self.modes.frequencies))
        curvature = np.linalg.eigvalsh(np.asarray(self.model.hessian(jnp.asarray(position, dtype=float))))
        well = float(np.sqrt(max(curvature.max(), 0.0) / float(self.model.ion_mass)))
        fastest = max(phonon, well)
        if dt * fastest > MAX_PHASE_PER_STEP:
            raise ValueError(
                f"dt = {dt} ps is too large: the fastest motion (phonons up to {phonon:.3g} rad/ps, the ion's "
                f"well {well:.3g} rad/ps) needs dt <= {MAX_PHASE_PER_STEP / fastest:.3g} ps"
            )


def run_coloured(dynamics, position, velocity, t1, dt, *, save_every=1, tolerance=1e-6, progress=False):
    """Integrate the coloured-noise description from ``(position, velocity)`` (Å, Å/ps) to ``t1`` ps.

    Tsit5 (diffrax) with steps of at most ``dt`` ps, shortened by the error control (relative and
    absolute tolerance ``tolerance`` in Å and Å/ps) where the ion meets a steep wall or a site
    moving fast; saves every ``save_every`` multiples of ``dt``. Pure in the state: ``jax.vmap``
    over positions/velocities (and over ``dynamics`` built from a batch of sampled modes) runs
    ensembles. The description's own ``dt`` and ``tolerance`` (for :func:`jaxion.dynamics.run`,
    which integrates it the same way) are not used here.

    Returns:
        :class:`ThermalTrajectory` with ``T = n_steps // save_every + 1`` saves.
    """
    _checks.require_run_length(t1, dt)
    _checks.require_integer("save_every", save_every, low=1)
    n_steps = int(round(t1 / dt))
    if _checks.is_concrete(position, dynamics):
        dynamics.check_step(dt, position)
    ts = jnp.arange(0, n_steps + 1, save_every) * dt
    dt0, controller, max_steps = _step_control(dt, tolerance, n_steps)
    solution = diffrax.diffeqsolve(
        dynamics.terms(), dynamics.solver(), t0=0.0, t1=n_steps * dt, dt0=dt0,
        y0=(jnp.asarray(position, dtype=float), jnp.asarray(velocity, dtype=float)),
        saveat=diffrax.SaveAt(ts=ts), max_steps=max_steps, stepsize_controller=controller,
        throw=False, progress_meter=diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter(),
    )
    positions, velocities = solution.ys
    energy = jax.vmap(lambda t, r, v: dynamics.energy((r, v), t))(ts, positions, velocities)
    finite, positions, velocities, energy = poison_after_failure(positions, velocities, energy)
    return ThermalTrajectory(ts, positions, velocities, energy, finite)


def _step_control(dt, tolerance, n_steps):
    """``(dt0, controller, max_steps)`` of a run of ``n_steps`` steps ``dt``: Tsit5's error control at
    ``tolerance``, steps of at most ``dt``, at most ``MAX_STEP_FACTOR`` steps per step of ``dt``."""
    controller = diffrax.PIDController(rtol=tolerance, atol=tolerance, dtmax=dt)
    return dt, controller, MAX_STEP_FACTOR * n_steps + 1
