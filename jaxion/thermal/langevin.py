"""The white-noise time-local Langevin equation (physics.md 5.2) in physical units.

An ion of mass ``M`` (meV ps^2/Å^2) at ``R`` (Å) with velocity ``V`` (Å/ps) obeys

    dR = V dt,
    M dV = [ -grad U(R) + F - Gamma(R) V ] dt + sqrt(2 k_B T) B(R) dW,

with ``U`` any landscape (an object with ``energy(R)`` in meV; by default the rigid one of the
model), ``F`` a constant applied force
(meV/Å), ``Gamma(R) = H(R) L H(R)`` the friction of the model (``H`` the Hessian of the rigid
interaction summed over sites, ``L`` the loss tensor) and ``B(R) = H(R) C``, ``C`` the Cholesky
factor of ``L``, so that ``B B^T = Gamma`` (fluctuation-dissipation) with no eigendecomposition.
The noise amplitude depends on ``R`` only, so the Itô and Stratonovich readings coincide. The
stationary state is the Boltzmann distribution ``exp(-(M V^2/2 + U)/k_B T)`` whatever ``Gamma`` is.

:class:`LangevinDynamics` gives the diffrax terms ``MultiTerm(ODETerm(drift), ControlTerm(diffusion,
path))`` on the state ``(R, V)``, usable with diffrax's generic SDE solvers (``EulerHeun``,
``Heun``, ``SPaRK``, ``GeneralShARK``, ...). diffrax's additive-noise solvers (``SRA1``, ``ShARK``,
``SEA``) refuse these terms (their diffusion must not depend on the state), and its underdamped
Langevin solvers (``ALIGN``, ``QUICSORT``, ``ShOULD``) take a constant diagonal friction only.

:class:`LangevinSplitting` is the dedicated integrator, a diffrax solver that uses the same terms
only through ``vf``/``contr``/``vf_prod``. One step of size ``h`` is BAOAB:

    B: V += (h/2) a(R)                       a(R) = drift_V(R, 0), the force per mass
    A: R += (h/2) V                          (the drift's R-part must be V, as in any Langevin equation)
    O: V <- E V + S sigma(R) dW / sqrt(h)    exact Ornstein-Uhlenbeck step, friction frozen at R
    A: R += (h/2) V
    B: V += (h/2) a(R)

The O step reads the friction rate ``A = Gamma(R)/M = -d drift_V / dV`` (the drift is affine in
``V``) and, with ``A = Q diag(lambda) Q^T`` (a 3x3 ``eigh``), uses ``E = exp(-A h)`` and
``S = Q diag(sqrt((1 - exp(-2 lambda h)) / (2 lambda h))) Q^T``: the velocity's conditional law after
the step is then exactly that of the OU process, ``N(E V, (k_B T/M)(I - E^2))``, for any noise
``sigma`` with ``sigma sigma^T = 2 (k_B T/M) A`` (the FDT), at any ``lambda h``. So the O step
preserves the Maxwell distribution exactly for any friction, however strong or anisotropic;
the sampling error is the O(h^2) of the B/A splitting (in a harmonic well with constant friction
BAOAB's positions are exact and ``<M V^2>`` is low by ``(w h)^2 / 4``, whatever the friction).

A step evaluates the force once (at the new position; the next step's first kick reuses it), the
friction once (one Hessian, at the midpoint) and the noise once (a Hessian-vector product), when
the drift is given split as ``MultiTerm(ODETerm(conservative_drift), ODETerm(drag))``
(``terms(..., split=True)``, what the splitting solver is given). With a single drift term the
kicks evaluate the whole drift at ``V = 0``, a second Hessian per step. On the follow-up model
(88-site stencil) a step costs ~18 us for one trajectory, like Euler-Maruyama (diffrax's
``EulerHeun``, which is Euler-Maruyama for these terms) and about half of ``Heun``, ``GeneralShARK``
or ``SPaRK``; the splitting samples ``<U>`` without measurable bias up to ``w dt ~ 0.4`` where
those are off by 0.3-6 % (``benchmarks/bench_langevin.py``).

The Brownian increments come from :class:`GridBrownianPath`: an independent ``N(0, h)`` draw per
step of the fixed grid ``t_k = k dt``, keyed by the step index ``k`` (diffrax's
``UnsafeBrownianPath`` keys by the float32-rounded times, which repeat past ~8e6 steps). The
increment ``W`` does not depend on the Lévy area requested, so every solver sees the same noise
for the same key.

:func:`run_langevin` integrates a fixed-step run with ``diffeqsolve`` (jit-compiled; vmappable
over keys and initial states) and returns a :class:`LangevinRun` with the splitting's diagnostics.
:class:`LangevinDynamics` is also a description of :mod:`jaxion.dynamics`: built with ``dt`` (and
``solver``), ``jaxion.dynamics.run(dynamics, state, t1, saveat=..., stop=..., key=key)`` runs the
same solve (the same terms, grid path and step grid: bitwise the same states for the same key) and
returns a :class:`~jaxion.trajectory.Trajectory`; a ``LeftRegion`` stop then measures a first-passage
(escape) time on the step grid.
"""

import math
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from .. import _checks
from ..dynamics import traced_floats
from ..solvers import Linear, reuse_unless_jump
from ..units import BOLTZMANN_MEV
from .model import maxwell_velocity
from .trajectory import (
    AbstractTimeLocalDynamics,
    ThermalTrajectory,
    ion_state,
    poison_after_failure,
    require_finite,
    step_option,
)

MAX_PHASE_PER_STEP = 0.5
"""Largest ``dt sqrt(k_max / M)`` accepted at the start of a run (``k_max`` the stiffest curvature
of the landscape there): BAOAB's kinetic-temperature error in a harmonic well is ``(w dt)^2 / 4``
(6% at 0.5), and Verlet-type steps are unstable beyond 2."""

MAX_STEP_DAMPING = 1.0
"""Largest ``dt max eig(Gamma) / M`` accepted at the start of a run with a generic (explicit)
diffrax solver, which resolves the friction instead of integrating it exactly (unstable near 2)."""

SOLVERS = {
    "euler": diffrax.Euler,
    "euler_heun": diffrax.EulerHeun,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "spark": diffrax.SPaRK,
    "general_shark": diffrax.GeneralShARK,
    "slow_rk": diffrax.SlowRK,
}
"""Generic diffrax SDE solvers :func:`run_langevin` accepts by name (besides ``"splitting"``)."""

_ADDITIVE_ONLY = ("sra1", "shark", "sea")


# --------------------------------------------------------------------------------------------
# Brownian increments on a fixed grid


class GridBrownianPath(diffrax.AbstractBrownianPath):
    """Brownian increments for fixed steps on the grid ``t_k = k dt``.

    ``evaluate(t0, t1)`` returns ``W(t1) - W(t0) ~ N(0, (t1 - t0) I)`` drawn from the key folded
    with the step index ``k = round(t0 / dt)``: reproducible for a key, independent between steps,
    the same whether run alone or in a vmapped batch. Only valid for queries over single grid
    steps (fixed step sizes, no adaptive stepping, no dense evaluation of the path itself).

    Attributes:
        shape: ``jax.ShapeDtypeStruct`` of one increment.
        levy_area: ``diffrax.BrownianIncrement``, ``SpaceTimeLevyArea`` or ``SpaceTimeTimeLevyArea``;
            the increment ``W`` is the same for all three (the areas come from further keys).
        key: PRNG key.
        dt: the grid step.
    """

    shape: jax.ShapeDtypeStruct = eqx.field(static=True)
    levy_area: type = eqx.field(static=True)
    key: jax.Array
    dt: jax.Array

    def __init__(self, shape, key, dt, levy_area=diffrax.BrownianIncrement):
        if isinstance(shape, tuple):
            shape = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
        # the concrete type for a solver's minimal_levy_area (an abstract type for the SRK solvers)
        for concrete in (diffrax.SpaceTimeTimeLevyArea, diffrax.SpaceTimeLevyArea, diffrax.BrownianIncrement):
            if isinstance(levy_area, type) and issubclass(concrete, levy_area):
                levy_area = concrete
                break
        else:
            raise ValueError(f"levy_area must be a diffrax Brownian increment or Lévy area type, got {levy_area!r}")
        self.shape = shape
        self.levy_area = levy_area
        self.key = key
        self.dt = jnp.asarray(dt, dtype=shape.dtype)

    @property
    def t0(self):
        return 0.0

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None:  # W(t0) itself is not stored: a fresh N(0, t0) draw, as diffrax's unsafe path
            t0, t1 = jnp.zeros_like(t0), t0
        t0, t1 = _not_differentiated(jnp.asarray(t0)), _not_differentiated(jnp.asarray(t1))
        index = jnp.round(t0 / self.dt).astype(jnp.int64).astype(jnp.uint32)
        key = jax.random.fold_in(self.key, index)
        h = (t1 - t0).astype(self.shape.dtype)
        root = jnp.sqrt(h)
        w = root * jax.random.normal(key, self.shape.shape, self.shape.dtype)
        if not use_levy:
            return w
        if self.levy_area is diffrax.BrownianIncrement:
            return diffrax.BrownianIncrement(dt=h, W=w)
        hh = root / np.sqrt(12.0) * jax.random.normal(jax.random.fold_in(key, 1), self.shape.shape, self.shape.dtype)
        if self.levy_area is diffrax.SpaceTimeLevyArea:
            return diffrax.SpaceTimeLevyArea(dt=h, W=w, H=hh)
        kk = root / np.sqrt(720.0) * jax.random.normal(jax.random.fold_in(key, 2), self.shape.shape, self.shape.dtype)
        return diffrax.SpaceTimeTimeLevyArea(dt=h, W=w, H=hh, K=kk)


@jax.custom_jvp
def _not_differentiated(time):
    """``time`` itself, raising if differentiated: an increment is a fresh draw per grid step, not a
    differentiable function of its times (the role of ``equinox.internal.nondifferentiable`` in
    diffrax's own Brownian paths)."""
    return time


@_not_differentiated.defjvp
def _not_differentiated_jvp(primals, tangents):
    raise ValueError("the times of GridBrownianPath.evaluate cannot be differentiated (the increments are "
                     "independent draws per grid step)")


# --------------------------------------------------------------------------------------------
# The dynamics


class LangevinDynamics(AbstractTimeLocalDynamics):
    """The time-local Langevin equation of physics.md 5.2 for an ion in a framework, a description of
    :mod:`jaxion.dynamics` (:mod:`jaxion.thermal.trajectory`): with a step ``dt``,
    ``jaxion.dynamics.run(dynamics, state, t1, saveat=..., stop=..., key=key)`` integrates it on the
    grid ``k dt`` with the same noise as ``run_langevin(dynamics, state, t1, dt, key=key)``.

    Attributes:
        model: the system giving ``ion_mass`` (meV ps^2/Å^2), ``rigid_energy(R)`` (meV), its
            Hessian ``hessian(R)`` (meV/Å^2, ``(3, 3)``) and ``loss_tensor`` (ps Å^2/meV): a
            :class:`jaxion.thermal.model.IonInFramework`, or any object with those four.
        landscape: the potential the ion moves in, any object with ``energy(R)`` (meV for
            ``R (3,)`` Å; its ``force(R)`` is used when it has one, else ``-grad energy``), or
            ``None`` for the rigid one, ``model.rigid_energy`` (as in the other descriptions).
        temperature: ``T`` in kelvin (``>= 0``).
        applied_force: constant external force ``F (3,)`` in meV/Å (drift-mobility runs).
        loss_factor: ``C (3, 3)``, the lower Cholesky factor of ``L`` (``C C^T = L``).
        dt: the time step (ps; a Python float) of runs through :func:`jaxion.dynamics.run`, or
            ``None`` (:func:`run_langevin` takes its own).
        sde_solver: the solver of those runs: :class:`LangevinSplitting` (``solver="splitting"``, the
            default), or a generic diffrax SDE solver (a name in :data:`SOLVERS` or an instance).

    The state is ``(R (3,), V (3,))``; ``energy`` is ``M |V|^2 / 2 + U(R)``, not conserved
    (``conservative`` is ``False``): the drag removes energy and the noise brings it.
    """

    model: eqx.Module
    landscape: object
    temperature: jax.Array
    applied_force: jax.Array
    loss_factor: jax.Array
    dt: float | None
    sde_solver: diffrax.AbstractSolver

    def __init__(self, model, landscape=None, temperature=0.0, applied_force=None, *, dt=None, solver="splitting"):
        for name in ("ion_mass", "rigid_energy", "hessian", "loss_tensor"):
            if not hasattr(model, name):
                raise ValueError(f"model must provide ion_mass, rigid_energy(R), hessian(R) and loss_tensor (e.g. an "
                                 f"IonInFramework); {type(model).__name__} has no {name}")
        if landscape is not None and not callable(getattr(landscape, "energy", None)):
            raise ValueError(f"landscape must have an energy(R) method (or be None), got {type(landscape).__name__}")
        self.model = model
        self.landscape = landscape
        self.temperature = jnp.asarray(temperature, dtype=float)
        self.applied_force = jnp.zeros(3) if applied_force is None else jnp.asarray(applied_force, dtype=float)
        loss = jnp.asarray(model.loss_tensor, dtype=float)
        _checks.require_shape("model.loss_tensor", loss, (3, 3))
        if _checks.is_concrete(loss):
            values = np.linalg.eigvalsh(0.5 * (np.asarray(loss) + np.asarray(loss).T))
            if not np.all(np.isfinite(loss)) or values[0] <= 0.0:
                raise ValueError(f"model.loss_tensor must be symmetric positive definite, got eigenvalues {values}")
        self.loss_factor = jnp.linalg.cholesky(0.5 * (loss + loss.T))
        self.dt = step_option(dt)
        self.sde_solver = _solver_from(solver)

    def __check_init__(self):
        _checks.require_shape("temperature", self.temperature, ())
        _checks.require_shape("applied_force", self.applied_force, (3,))
        if _checks.is_concrete(self.temperature, self.applied_force):
            _checks.enforce(None, self.problems())

    def problems(self):
        """What makes the dynamics invalid, as traceable :func:`jaxion._checks.problem` triples
        (enforced on construction and again, traced too, by :func:`run_langevin`)."""
        return [_checks.positive("temperature (K)", self.temperature, allow_zero=True),
                _checks.finite("applied_force", self.applied_force)]

    def check_step(self, dt, position, solver="splitting"):
        """Raise ``ValueError`` (with the numbers) unless ``dt`` resolves the ion's well at
        ``position``: ``dt sqrt(k_max / M) <= MAX_PHASE_PER_STEP`` with ``k_max`` the landscape's
        stiffest curvature there; for a generic (explicit) diffrax solver also
        ``dt max eig(Gamma) / M <= MAX_STEP_DAMPING`` (the splitting integrates the friction exactly).
        Concrete values only (it is skipped on traced ones)."""
        _require_step_fits(self, jnp.asarray(position, dtype=float), float(dt), _solver_from(solver))

    # -- ingredients -------------------------------------------------------------------------

    @property
    def mass(self):
        """``M`` (meV ps^2/Å^2), a scalar."""
        return jnp.asarray(self.model.ion_mass, dtype=float)

    @property
    def thermal_energy(self):
        """``k_B T`` in meV."""
        return BOLTZMANN_MEV * self.temperature

    def landscape_energy(self, position):
        """``U(R)`` in meV (the rigid ``model.rigid_energy`` without a landscape)."""
        if self.landscape is None:
            return self.model.rigid_energy(position)
        return self.landscape.energy(position)

    def force(self, position):
        """``-grad U(R) + F`` in meV/Å, ``(3,)``."""
        force_fn = None if self.landscape is None else getattr(self.landscape, "force", None)
        force = force_fn(position) if callable(force_fn) else -jax.grad(self.landscape_energy)(position)
        return force + self.applied_force

    def friction(self, position):
        """``Gamma(R) = H L H``, ``(3, 3)`` in (meV ps^2/Å^2)/ps."""
        hessian = self.model.hessian(position)
        return hessian @ self.loss_factor @ (self.loss_factor.T @ hessian)

    def noise_factor(self, position):
        """``B(R) = H C`` with ``B B^T = Gamma(R)``, ``(3, 3)``."""
        return self.model.hessian(position) @ self.loss_factor

    # -- state -------------------------------------------------------------------------------

    def initial_state(self, position, velocity=None, key=None):
        """The state ``(R, V)`` (each ``(3,)``). ``velocity=None`` draws it from the Maxwell
        distribution ``N(0, k_B T / M)`` with ``key`` (zero at ``T = 0``, where no key is needed)."""
        position = jnp.asarray(position, dtype=float)
        _checks.require_shape("position", position, (3,))
        _checks.require_finite("position", position)
        if velocity is None:
            if key is None:
                if _checks.is_concrete(self.temperature) and float(self.temperature) == 0.0:
                    return position, jnp.zeros(3)
                raise ValueError("key is needed to draw Maxwell-Boltzmann velocities at T > 0 (or pass velocity)")
            velocity = maxwell_velocity(key, self.temperature, self.mass)
        velocity = jnp.asarray(velocity, dtype=float)
        _checks.require_shape("velocity", velocity, (3,))
        _checks.require_finite("velocity", velocity)
        return position, velocity

    @staticmethod
    def position(state):
        """``R`` of a state (or a batch/path of states)."""
        return state[0]

    @staticmethod
    def velocity(state):
        """``V`` of a state."""
        return state[1]

    def kinetic_energy(self, state):
        """``M |V|^2 / 2`` in meV."""
        return 0.5 * self.mass * jnp.sum(state[1] ** 2, axis=-1)

    def energy(self, state, t=0.0):
        """``M |V|^2 / 2 + U(R)`` in meV for one state (the applied force's work is not included; the
        landscape does not depend on the time ``t``)."""
        return self.kinetic_energy(state) + self.landscape_energy(state[0])

    @property
    def conservative(self):
        """``False``: the drag and the noise exchange energy with the framework."""
        return False

    # -- the interface (jaxion.dynamics) ------------------------------------------------------

    def check(self, position, velocity, duration):
        """:meth:`check_step` with the description's ``dt`` and solver at ``position``."""
        _require_step_fits(self, jnp.asarray(position, dtype=float), self.step(), self.sde_solver)

    def checked_start(self, state):
        """``(dynamics, (R, V))``: the state's shapes, its finiteness and the description's
        :meth:`problems` checked (eagerly, or as run-time errors where traced)."""
        position, velocity = ion_state(state, "Langevin")
        problems = _checks.problems_of(self) + [_checks.finite("state position", position),
                                                _checks.finite("state velocity", velocity)]
        dynamics, position, velocity = _checks.enforce((self, position, velocity), problems)
        return dynamics, (position, velocity)

    def noise_key(self, key):
        """``key``; any key at ``T = 0`` (no noise), where ``None`` is accepted."""
        if key is not None:
            return key
        if _checks.is_concrete(self.temperature) and float(self.temperature) == 0.0:
            return jax.random.key(0)
        raise ValueError("a Langevin run at T > 0 needs key= (the PRNG key of its noise)")

    def solver(self):
        return self.sde_solver

    def step_control(self, t1):
        """No ``dt0``: ``StepTo`` the grid ``k dt`` (the grid path's steps), as :func:`run_langevin`."""
        n_steps = self.n_steps(t1)
        return None, diffrax.StepTo(ts=_step_grid(self.dt, n_steps)), n_steps

    # -- diffrax terms -----------------------------------------------------------------------

    def drift(self, t, state, args):
        """``(dR/dt, dV/dt)`` deterministic part: ``(V, (F(R) - Gamma(R) V) / M)``."""
        del t, args
        position, velocity = state
        return velocity, (self.force(position) - self._drag(position, velocity)) / self.mass

    def conservative_drift(self, t, state, args):
        """The drift without the drag, ``(V, F(R) / M)``: no Hessian."""
        del t, args
        position, velocity = state
        return velocity, self.force(position) / self.mass

    def drag(self, t, state, args):
        """The drag part of the drift, ``(0, -Gamma(R) V / M)``."""
        del t, args
        position, velocity = state
        return jnp.zeros_like(velocity), -self._drag(position, velocity) / self.mass

    def _drag(self, position, velocity):
        hessian = self.model.hessian(position)
        return hessian @ (self.loss_factor @ (self.loss_factor.T @ (hessian @ velocity)))

    def diffusion(self, t, state, args):
        """The noise as a lineax operator ``dW (3,) -> (0, sqrt(2 k_B T) H(R) C dW / M)``.

        Applied lazily as a Hessian-vector product of ``model.rigid_energy`` (one forward-over-
        reverse pass, a third of the cost of the full Hessian for the follow-up model's stencil)."""
        del t, args
        position = state[0]
        scale = jnp.sqrt(2.0 * self.thermal_energy) / self.mass
        gradient = jax.grad(self.model.rigid_energy)

        def kick(dw):
            curvature = jax.jvp(gradient, (position,), (self.loss_factor @ dw,))[1]
            return jnp.zeros_like(curvature), scale * curvature

        return lx.FunctionLinearOperator(kick, jax.ShapeDtypeStruct(position.shape, position.dtype))

    def terms(self, key=None, dt=None, *, levy_area=None, split=None):
        """``MultiTerm(ODETerm(drift), ControlTerm(diffusion, path))`` for the state ``(R, V)``.

        ``path`` is a :class:`GridBrownianPath` on the grid ``k dt`` (``dt`` by default the
        description's), else, with neither, diffrax's ``UnsafeBrownianPath`` (fixed steps only).
        ``levy_area`` as the solver needs (by default the description's solver's
        ``minimal_levy_area``: the SRK solvers need one). ``split=True`` (by default for the
        splitting solver) gives the drift as ``MultiTerm(ODETerm(conservative_drift),
        ODETerm(drag))``, the same vector field summed, from which :class:`LangevinSplitting` kicks
        with the force alone.
        """
        dt = self.dt if dt is None else dt
        default_levy_area, default_split = _term_options(self.sde_solver)
        levy_area = default_levy_area if levy_area is None else levy_area
        split = default_split if split is None else split
        shape = jax.ShapeDtypeStruct((3,), jnp.result_type(float))
        if dt is None:
            path = diffrax.UnsafeBrownianPath(shape, key, levy_area=levy_area)
        else:
            path = GridBrownianPath(shape, key, dt, levy_area=levy_area)
        if split:
            drift = diffrax.MultiTerm(diffrax.ODETerm(self.conservative_drift), diffrax.ODETerm(self.drag))
        else:
            drift = diffrax.ODETerm(self.drift)
        return diffrax.MultiTerm(drift, diffrax.ControlTerm(self.diffusion, path))


# --------------------------------------------------------------------------------------------
# The splitting solver


def _ou_factors(rate, h):
    """``E = exp(-A h)`` and ``S = sqrt((1 - exp(-2 A h)) / (2 A h))`` for a symmetric rate matrix
    ``A`` (negative eigenvalues, which a friction cannot have, are clipped to zero)."""
    values, vectors = jnp.linalg.eigh(0.5 * (rate + rate.T))
    x = jnp.maximum(values, 0.0) * h
    small = x < 1e-3
    safe = jnp.where(small, 1.0, x)
    # (1 - e^{-2x}) / (2x) = 1 - x + 2x^2/3 - x^3/3 + ...  (series error < 1e-13 below 1e-3)
    ratio = jnp.where(small, 1.0 - x + (2.0 / 3.0) * x**2 - x**3 / 3.0, -jnp.expm1(-2.0 * safe) / (2.0 * safe))

    def function(f):
        return (vectors * f) @ vectors.T

    return function(jnp.exp(-x)), function(jnp.sqrt(ratio))


class SplittingState(eqx.Module):
    """Solver state of :class:`LangevinSplitting`.

    Attributes:
        acceleration: ``a(R)`` at the step's start (first same as last).
        drag_work: running ``sum (|E V|^2 - |V|^2) / 2`` over O steps (per unit mass).
        noise_work: running ``sum (|V_O|^2 - |E V|^2) / 2`` over O steps (per unit mass).
        midpoint_kinetic: running ``sum |V_O|^2 / 2`` of the velocities leaving the O steps (per
            unit mass): BAOAB's midpoint velocities have the exact Maxwell variance in a harmonic
            well, where the full-step ones are low by ``(w h)^2 / 4``.
    """

    acceleration: object
    drag_work: jax.Array
    noise_work: jax.Array
    midpoint_kinetic: jax.Array


class LangevinSplitting(diffrax.AbstractItoSolver):
    """BAOAB splitting with an exact Ornstein-Uhlenbeck step for a tensor, position-dependent
    friction (module docstring). Fixed steps only (no error estimate); weak order 2.

    Terms: ``MultiTerm(drift, diffusion)`` on states ``(R, V)`` of ``(d,)`` arrays, with
    ``drift.vf = (V, a(R) - A(R) V)`` affine in ``V`` (``A`` symmetric positive semidefinite) and
    ``diffusion.vf_prod = (0, sigma(R) dW)`` with ``sigma sigma^T = 2 (k_B T / M) A`` (the FDT).
    The Itô and Stratonovich solutions coincide for such terms. A drift that is itself a
    ``MultiTerm`` of two terms is read as ``(conservative, drag)``: the kicks evaluate only the
    first (at ``V = 0``), the O step differentiates only the second. Every term is used through
    ``vf``/``contr``/``vf_prod`` only.

    The solver state (:class:`SplittingState`; ``SaveAt(solver_state=True)`` returns it) accumulates
    the O steps' kinetic-energy changes per unit mass, the heat exchanged with the framework split
    into the drag's deterministic decay and the noise's kicks, and the kinetic energy of the
    midpoint velocities.
    """

    term_structure: ClassVar = diffrax.MultiTerm[tuple[diffrax.AbstractTerm, diffrax.AbstractTerm]]
    interpolation_cls: ClassVar[Callable[..., diffrax.AbstractLocalInterpolation]] = Linear

    def order(self, terms):
        return 2

    def strong_order(self, terms):
        return 1.0

    def init(self, terms, t0, t1, y0, args):
        zero = jnp.zeros((), dtype=jnp.result_type(y0[1]))
        return SplittingState(_acceleration(terms, t0, y0[0], y0[1], args), zero, zero, zero)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        drag, diffusion = _split(terms)[1], terms.terms[1]
        position, velocity = y0
        h = t1 - t0
        half = 0.5 * h
        middle = t0 + half
        acceleration = reuse_unless_jump(
            made_jump, solver_state.acceleration, lambda: _acceleration(terms, t0, position, velocity, args)
        )
        velocity = velocity + half * acceleration  # B
        position = position + half * velocity  # A (the drift's R-part is V)

        # O: the drift's V-part is a(R) - A(R) V, so A = -d/dV; the noise is sigma(R) dW.
        def velocity_rate(v):
            return _velocity_field(drag, middle, (position, v), args)

        rate = -jax.jacfwd(velocity_rate)(velocity)
        decay, spread = _ou_factors(rate, h)
        kick = diffusion.vf_prod(middle, (position, velocity), args, diffusion.contr(t0, t1))[1]
        damped = decay @ velocity
        noisy = damped + spread @ kick
        drag_work = solver_state.drag_work + 0.5 * (jnp.sum(damped**2) - jnp.sum(velocity**2))
        noise_work = solver_state.noise_work + 0.5 * (jnp.sum(noisy**2) - jnp.sum(damped**2))
        midpoint_kinetic = solver_state.midpoint_kinetic + 0.5 * jnp.sum(noisy**2)

        position = position + half * noisy  # A
        acceleration = _acceleration(terms, t1, position, noisy, args)
        y1 = (position, noisy + half * acceleration)  # B
        state = SplittingState(acceleration, drag_work, noise_work, midpoint_kinetic)
        return y1, None, dict(y0=y0, y1=y1), state, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        drift, diffusion = terms.terms
        return drift.vf(t0, y0, args), diffusion.vf(t0, y0, args)


def _split(terms):
    """``(conservative, drag)`` parts of the drift: the two terms of a split drift
    ``MultiTerm(conservative, drag)``, else the whole drift for both."""
    drift = terms.terms[0]
    if isinstance(drift, diffrax.MultiTerm) and len(drift.terms) == 2:
        return drift.terms
    return drift, drift


def _velocity_field(term, t, y, args):
    """``dV/dt`` of a drift term (summing the parts of a ``MultiTerm``)."""
    if isinstance(term, diffrax.MultiTerm):
        return sum(_velocity_field(part, t, y, args) for part in term.terms)
    return term.vf(t, y, args)[1]


def _acceleration(terms, t, position, velocity, args):
    """``a(R)``: the conservative part's ``dV/dt`` at ``V = 0`` (for an unsplit drift, the whole
    drift's, whose friction term then vanishes)."""
    return _velocity_field(_split(terms)[0], t, (position, jnp.zeros_like(velocity)), args)


# --------------------------------------------------------------------------------------------
# Runs


class LangevinRun(eqx.Module):
    """A Langevin trajectory saved every ``save_every`` steps (leading batch axes when vmapped).

    The fields of :class:`jaxion.thermal.trajectory.ThermalTrajectory` plus the run's diagnostics.

    Attributes:
        ts: ``(T,)`` save times (ps), ``0`` to ``t1``.
        positions: ``(T, 3)`` unwrapped positions, Å.
        velocities: ``(T, 3)`` Å/ps.
        energy: ``(T,)`` kinetic plus landscape energy, meV.
        finite: ``False`` if the state stopped being finite (the arrays then hold NaN from the first
            bad save on, and the diagnostics are NaN: never a plausible number).
        mean_kinetic_energy: ``M <|V|^2> / 2`` over the saves after ``t = 0``, meV.
        kinetic_temperature: ``2 <KE> / (3 k_B)``, K.
        drag_work, noise_work: the splitting solver's heat exchanged in its O steps, meV: the
            drag's deterministic decay (negative) and the noise's kicks (positive), which cancel on
            average at equilibrium; at ``T = 0`` the drag's equals the energy change up to the
            splitting's O(h^2). ``None`` for the generic solvers.
        midpoint_kinetic_temperature: the splitting solver's kinetic temperature from the velocities
            at the steps' midpoints (after each O step, every step of the run), K: free of the
            ``(w h)^2 / 4`` deficit of the saved full-step velocities (exact in a harmonic well).
            ``None`` for the generic solvers.
    """

    ts: jax.Array
    positions: jax.Array
    velocities: jax.Array
    energy: jax.Array
    finite: jax.Array
    mean_kinetic_energy: jax.Array
    kinetic_temperature: jax.Array
    drag_work: jax.Array | None
    noise_work: jax.Array | None
    midpoint_kinetic_temperature: jax.Array | None

    @property
    def final_state(self):
        """``(R, V)`` at ``t1`` (to continue the run, with a fresh key)."""
        return self.positions[..., -1, :], self.velocities[..., -1, :]

    @property
    def trajectory(self):
        """The :class:`~jaxion.thermal.trajectory.ThermalTrajectory` every thermal description returns."""
        return ThermalTrajectory(self.ts, self.positions, self.velocities, self.energy, self.finite)


def _term_options(solver):
    """``(levy_area, split)`` of the terms ``solver`` takes: its minimal Lévy area, and the split drift
    for :class:`LangevinSplitting`."""
    return getattr(solver, "minimal_levy_area", diffrax.BrownianIncrement), isinstance(solver, LangevinSplitting)


def _step_grid(dt, steps):
    """The step times ``k dt``, ``k = 0 .. steps`` (ps), each one product (no accumulated rounding):
    NumPy for a concrete ``dt``, the same numbers as the traced product."""
    numbers = np if _checks.is_concrete(dt) else jnp
    return dt * numbers.arange(steps + 1, dtype=float)


def _solver_from(solver):
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    if not isinstance(solver, str):
        raise ValueError(f"solver must be 'splitting', a name in {tuple(SOLVERS)} or a diffrax solver, got {solver!r}")
    name = solver.lower()
    if name in ("splitting", "baoab"):
        return LangevinSplitting()
    if name in _ADDITIVE_ONLY:
        raise ValueError(
            f"solver {solver!r} needs additive noise (a diffusion independent of the state), but the Langevin "
            "noise sqrt(2 k_B T) H(R) L^(1/2) depends on the position; use 'general_shark' or 'spark'"
        )
    if name not in SOLVERS:
        raise ValueError(f"solver must be 'splitting' or one of {tuple(SOLVERS)}, got {solver!r}")
    return SOLVERS[name]()


@eqx.filter_jit
def _step_scales(dynamics, position):
    """Stiffest landscape curvature (meV/Å^2) and largest damping rate ``max eig Gamma / M`` (/ps)
    at ``position``, compiled (the Hessian op by op is slow)."""
    stiffest = jnp.linalg.eigvalsh(jax.hessian(dynamics.landscape_energy)(position))[-1]
    return stiffest, jnp.linalg.eigvalsh(dynamics.friction(position))[-1] / dynamics.mass


def _require_step_fits(dynamics, position, dt, solver):
    """``ValueError`` if ``dt`` does not resolve the ion's well (or, for an explicit solver, the
    friction) at ``position``."""
    if not _checks.is_concrete(dynamics, position):
        return
    mass = float(dynamics.mass)
    stiffest, rate = (float(x) for x in _step_scales(dynamics, position))
    if stiffest > 0.0:
        time_scale = np.sqrt(mass / stiffest)
        if dt > MAX_PHASE_PER_STEP * time_scale:
            raise ValueError(
                f"dt = {dt:.4g} ps is too large for the ion's well: the landscape's stiffest curvature at "
                f"R = {np.asarray(position).round(4).tolist()} Å is k = {stiffest:.4g} meV/Å^2, so sqrt(M / k) = "
                f"{time_scale:.4g} ps (M = {mass:.4g} meV ps^2/Å^2) and dt must be at most "
                f"{MAX_PHASE_PER_STEP} x that = {MAX_PHASE_PER_STEP * time_scale:.4g} ps"
            )
    if not isinstance(solver, LangevinSplitting) and dt * rate > MAX_STEP_DAMPING:
        raise ValueError(
            f"dt = {dt:.4g} ps is too large for the friction with the explicit solver {type(solver).__name__}: "
            f"the largest damping rate Gamma/M at R = {np.asarray(position).round(4).tolist()} Å is {rate:.4g} /ps, "
            f"so dt must be at most {MAX_STEP_DAMPING / rate:.4g} ps; use solver='splitting', which integrates "
            "the friction exactly"
        )


def run_langevin(dynamics, state, t1, dt, *, key, save_every=1, solver="splitting", progress=False):
    """Integrate the Langevin equation from ``state = (R, V)`` for ``t1`` ps with fixed steps ``dt``.

    Args:
        dynamics: the :class:`LangevinDynamics` (its own ``dt`` and solver, for
            :func:`jaxion.dynamics.run`, are not used here).
        state: ``(R (3,), V (3,))``, e.g. from :meth:`LangevinDynamics.initial_state`.
        t1: duration (ps), rounded up to a whole number of save intervals ``save_every dt``.
        dt: time step (ps).
        key: PRNG key of the noise (fresh for every run: runs always start at ``t = 0``).
        save_every: steps between saved states.
        solver: ``"splitting"`` (:class:`LangevinSplitting`), a name in :data:`SOLVERS`, or a
            diffrax solver instance.
        progress: show diffrax's tqdm progress bar.

    Returns:
        :class:`LangevinRun` with ``T = n_steps / save_every + 1`` saves at ``ts = k save_every dt``
        (``.trajectory`` gives the :class:`ThermalTrajectory`). Vmap over ``key`` and/or ``state``
        for ensembles (``t1``, ``dt``, ``save_every`` and ``solver`` stay fixed); the same key gives
        the same trajectory alone or in a batch.

    Raises:
        ValueError: bad arguments (non-positive ``t1``/``dt``, bad ``save_every``, a negative
            temperature, a non-finite state, a step too large for the well or the friction); for
            traced (e.g. vmapped) inputs the same message as a run-time error.
        NonFiniteThermalRunError: the (concrete) trajectory became non-finite.
    """
    _checks.require_run_length(t1, dt)
    t1, dt = float(t1), float(dt)
    if not isinstance(dynamics, LangevinDynamics):
        raise ValueError(f"dynamics must be a LangevinDynamics, got {type(dynamics).__name__}")
    _checks.require_integer("save_every", save_every, low=1)
    steps = save_every * max(1, math.ceil(t1 / (dt * save_every) * (1.0 - 1e-12)))
    dynamics, (position, velocity) = dynamics.checked_start(state)
    solver = _solver_from(solver)
    _require_step_fits(dynamics, position, dt, solver)
    run = _solve(traced_floats(dynamics), (position, velocity), key, jnp.asarray(dt), steps, save_every, solver,
                 bool(progress))
    return require_finite(run)


@eqx.filter_jit
def _solve(dynamics, state, key, dt, steps, save_every, solver, progress):
    """The diffrax solve and the diagnostics, compiled once per (steps, save_every, solver)."""
    levy_area, splitting = _term_options(solver)
    terms = dynamics.terms(key, dt, levy_area=levy_area, split=splitting)
    grid = _step_grid(dt, steps)
    solution = diffrax.diffeqsolve(
        terms,
        solver,
        0.0,
        grid[-1],
        None,
        state,
        saveat=diffrax.SaveAt(ts=grid[::save_every], solver_state=splitting),
        stepsize_controller=diffrax.StepTo(ts=grid),
        max_steps=steps,
        progress_meter=diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter(),
    )
    positions, velocities = solution.ys
    energy = jax.vmap(lambda r, v: dynamics.energy((r, v)))(positions, velocities)
    finite, positions, velocities, energy = poison_after_failure(positions, velocities, energy)
    mean_kinetic = jnp.mean(dynamics.kinetic_energy((positions[1:], velocities[1:])))
    drag_work = noise_work = midpoint_temperature = None
    if splitting:
        nan_unless_finite = lambda work: jnp.where(finite, dynamics.mass * work, jnp.nan)  # noqa: E731
        drag_work = nan_unless_finite(solution.solver_state.drag_work)
        noise_work = nan_unless_finite(solution.solver_state.noise_work)
        midpoint_kinetic = nan_unless_finite(solution.solver_state.midpoint_kinetic) / steps
        midpoint_temperature = 2.0 * midpoint_kinetic / (3.0 * BOLTZMANN_MEV)
    return LangevinRun(
        ts=solution.ts,
        positions=positions,
        velocities=velocities,
        energy=energy,
        finite=finite,
        mean_kinetic_energy=mean_kinetic,
        kinetic_temperature=2.0 * mean_kinetic / (3.0 * BOLTZMANN_MEV),
        drag_work=drag_work,
        noise_work=noise_work,
        midpoint_kinetic_temperature=midpoint_temperature,
    )
