"""Transport from thermal trajectories (physics.md 5.5): diffusion, mobility, conductivity, Arrhenius.

One entry point per observable, the same for every description of the thermal framework:

* ``"langevin"``: white-noise time-local Langevin equation (5.2), :mod:`jaxion.thermal.langevin`;
* ``"coloured"``: thermal sites and drag on the relative velocity (5.3), :mod:`jaxion.thermal.coloured`;
* ``"full"``: the whole thermal lattice plus the ion (5.4), :mod:`jaxion.thermal.full`.

Each trajectory is a pure function of one PRNG key (it samples its own initial state: a Maxwell
velocity, the lattice's normal modes), so ensembles
are ``vmap``ped, reproducible from a seed, and independent of the batch size. The ion starts at
a cell centre with a Maxwell velocity; the estimators leave out an equilibration time. Trajectories are
the independent blocks of every error bar.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..units import BOLTZMANN_MEV
from . import transport
from .coloured import ColouredNoiseDynamics, run_coloured
from .ensemble import run_ensemble, trajectory_keys
from .full import FullThermalDynamics, run_full_thermal
from .landscape import RigidLandscape
from .langevin import LangevinDynamics, run_langevin
from .model import IonInFramework, maxwell_velocity
from .modes import thermal_modes
from .trajectory import ThermalTrajectory, poison_after_failure

DESCRIPTIONS = ("langevin", "coloured", "full")
KINETIC_CEILING = 100.0  # in units of k_B T (plus 1 meV, for T = 0)


def _fail_above_ceiling(trajectory, mass, thermal):
    """``trajectory`` with saves from the first one whose ion kinetic energy exceeds the ceiling on
    poisoned (NaN) and ``finite`` cleared."""
    kinetic = 0.5 * mass * jnp.sum(trajectory.velocities**2, axis=-1)
    over = kinetic > KINETIC_CEILING * thermal + 1.0
    finite, positions, velocities, energy = poison_after_failure(
        jnp.where(over[:, None], jnp.nan, trajectory.positions), trajectory.velocities, trajectory.energy)
    return ThermalTrajectory(trajectory.ts, positions, velocities, energy, finite & trajectory.finite)


class ThermalRun(eqx.Module):
    """What one thermal trajectory needs besides its key (static run settings and the physics).

    Attributes:
        model: the :class:`IonInFramework` (with ``size`` set for "coloured" and "full").
        temperature: kelvin.
        description: one of :data:`DESCRIPTIONS` (static).
        t1, dt: duration and step, ps (static).
        save_every: steps between saves (static).
        landscape: for the time-local descriptions, the landscape (an ``AbstractLandscape``);
            ``None`` is the rigid one. The full description relaxes the lattice itself and takes none.
        statistics: ``"classical"`` or ``"quantum"`` lattice (coloured and full; static).
        applied_force: ``(3,)`` meV/Å on the ion (drift mobility), or ``None``.
    """

    model: IonInFramework
    temperature: jax.Array
    description: str = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    save_every: int = eqx.field(static=True)
    landscape: eqx.Module | None = None
    statistics: str = eqx.field(static=True, default="classical")
    applied_force: jax.Array | None = None

    def __check_init__(self):
        if self.description not in DESCRIPTIONS:
            raise ValueError(f"description must be one of {DESCRIPTIONS}, got {self.description!r}")
        _checks.require_positive("temperature (K)", self.temperature, allow_zero=True)
        _checks.require_run_length(self.t1, self.dt)
        _checks.require_integer("save_every", self.save_every, low=1)
        if self.description != "langevin" and self.model.size is None:
            raise ValueError(f"the {self.description!r} description needs a periodic box: build the model with size=L")
        if self.description == "full" and (self.landscape is not None or self.applied_force is not None):
            raise ValueError("the full description relaxes the lattice itself: landscape and applied_force are "
                             "for the time-local descriptions")

    @property
    def start(self):
        """The ion's starting point, the centre of cell (0, 0, 0) (the landscape's minimum), Å;
        the estimators leave out an equilibration time after it."""
        return jnp.full(3, 0.5) * self.model.lattice.spacing

    def maxwell_velocity(self, key):
        """A Maxwell-Boltzmann velocity ``N(0, k_B T / M)`` per axis, Å/ps."""
        return maxwell_velocity(key, self.temperature, self.model.ion_mass)

    def check(self):
        """Check the step against the fastest motion once, eagerly (the vmapped runs cannot)."""
        key = jax.random.key(0)
        if self.description == "langevin":
            self._langevin_dynamics().check_step(self.dt, self.start)
        elif self.description == "coloured":
            ColouredNoiseDynamics(self.model, self._modes(key), self.landscape, self._force).check_step(
                self.dt, self.start)
        else:
            FullThermalDynamics(self.model).check_step(self.dt, self.start)

    @property
    def _force(self):
        return jnp.zeros(3) if self.applied_force is None else self.applied_force

    def _modes(self, key):
        return thermal_modes(self.model.lattice, self.model.size, self.temperature, key, statistics=self.statistics)

    def _langevin_dynamics(self):
        landscape = RigidLandscape(self.model) if self.landscape is None else self.landscape
        return LangevinDynamics(self.model, landscape, self.temperature, self.applied_force)

    def __call__(self, key):
        """One trajectory from ``key``: a :class:`ThermalTrajectory` (pure: vmap over keys).

        A run whose ion ever holds more than :data:`KINETIC_CEILING` ``k_B T`` of kinetic
        energy (probability ``exp(-100)`` in equilibrium) has met a force its step could not
        resolve: it is marked failed (``finite = False``, NaN from there on), never averaged in.
        """
        return _fail_above_ceiling(self._trajectory(key), self.model.ion_mass, BOLTZMANN_MEV * self.temperature)

    def _trajectory(self, key):
        key_lattice, key_velocity, key_noise = jax.random.split(key, 3)
        position, velocity = self.start, self.maxwell_velocity(key_velocity)
        if self.description == "langevin":
            dynamics = self._langevin_dynamics()
            return run_langevin(dynamics, (position, velocity), self.t1, self.dt, key=key_noise,
                                save_every=self.save_every).trajectory
        modes = self._modes(key_lattice)
        if self.description == "coloured":
            dynamics = ColouredNoiseDynamics(self.model, modes, self.landscape, self._force)
            return run_coloured(dynamics, position, velocity, self.t1, self.dt, save_every=self.save_every)
        dynamics = FullThermalDynamics(self.model)
        state = dynamics.thermal_state(position, velocity, modes)
        return run_full_thermal(dynamics, state, self.t1, self.dt, save_every=self.save_every).trajectory


def thermal_ensemble(run, trajectories, *, seed=0, batch=8, out=None, progress=True):
    """``trajectories`` runs of ``run`` (a :class:`ThermalRun`) from keys split off ``seed``.

    Batches of ``batch`` are vmapped and written to ``out`` as they finish (see
    :func:`jaxion.thermal.ensemble.run_ensemble`); failed trajectories are reported and left out.
    """
    run.check()
    name = f"{run.description}_{float(run.temperature):g}K"
    return run_ensemble(run, trajectory_keys(seed, trajectories), batch=batch, out=out, name=name,
                        progress=progress)


class TransportResult(eqx.Module):
    """Transport coefficients at one temperature with their error bars (trajectories as blocks).

    Attributes:
        temperature: K.
        diffusion: :class:`~jaxion.thermal.transport.DiffusionEstimate` (tensor and scalar, Å^2/ps).
        mobility: Einstein mobility ``D / k_B T`` (value, error), Å^2/(ps meV).
        kinetic_temperature: the ion's mean kinetic energy per axis as a temperature.
        trajectories: the batched :class:`ThermalTrajectory`.
    """

    temperature: float
    diffusion: transport.DiffusionEstimate
    mobility: transport.Estimate
    kinetic_temperature: transport.KineticTemperature
    trajectories: ThermalTrajectory

    def conductivity(self, carrier_density, charge=1):
        """Nernst-Einstein ionic conductivity (S/cm) for ``carrier_density`` carriers per cm^3."""
        return transport.nernst_einstein_conductivity(
            self.diffusion.D_scalar, self.temperature, carrier_density, charge, self.diffusion.D_scalar_error)


def diffusion(model, temperature, *, description="langevin", trajectories=16, t1=120.0, dt=0.005, save_every=20,
              segment=12.0, fit_window=(1.0, 12.0), equilibration=10.0, landscape=None, statistics="classical",
              seed=0, batch=8, out=None, progress=True):
    """Diffusion tensor, Einstein mobility and kinetic temperature of the ion at ``temperature`` (K).

    Runs ``trajectories`` independent trajectories of ``t1`` ps (step ``dt``, saved every
    ``save_every`` steps), leaves out the first ``equilibration`` ps (the ion starts at rest in
    position at a cell centre; ~4 damping times ``M / Gamma`` of the model at its minimum), and
    fits the MSD of ``segment``-ps pieces over ``fit_window`` (the follow-up paper's protocol:
    12 ps segments, fit over 1-12 ps); see :func:`jaxion.thermal.transport.diffusion_tensor`.

    Returns:
        :class:`TransportResult`.
    """
    run = ThermalRun(model, jnp.asarray(temperature, dtype=float), description, float(t1), float(dt),
                     int(save_every), landscape, statistics)
    ensemble = thermal_ensemble(run, trajectories, seed=seed, batch=batch, out=out, progress=progress)
    saved_dt = run.dt * run.save_every
    first = int(round(equilibration / saved_dt))
    if not 0 <= first < ensemble.ts.shape[-1] - 2:
        raise ValueError(f"equilibration = {equilibration} ps leaves no data in a run of t1 = {t1} ps")
    positions, velocities = np.asarray(ensemble.positions[:, first:]), np.asarray(ensemble.velocities[:, first:])
    estimate = transport.diffusion_tensor(positions, saved_dt, fit_window, segment=segment)
    mobility = transport.einstein_mobility(estimate.D_scalar, temperature, estimate.D_scalar_error)
    kinetic = transport.kinetic_temperature(velocities, model.ion_mass)
    return TransportResult(float(temperature), estimate, mobility, kinetic, ensemble)


def drift_mobility(model, temperature, force, *, description="langevin", trajectories=64, t1=120.0, dt=0.005,
                   save_every=20, equilibration=10.0, landscape=None, statistics="classical", seed=0, batch=8,
                   out=None, progress=True):
    """Mobility from the mean drift under a small constant ``force (3,)`` meV/Å: ``<dR . F> / (t |F|^2)``
    over the run after ``equilibration`` ps (the drift's own transient, ~``M / Gamma``, is left out).

    In linear response it equals the Einstein mobility ``D / k_B T`` (physics.md 5.5).
    """
    force = jnp.asarray(force, dtype=float)
    run = ThermalRun(model, jnp.asarray(temperature, dtype=float), description, float(t1), float(dt),
                     int(save_every), landscape, statistics, force)
    ensemble = thermal_ensemble(run, trajectories, seed=seed, batch=batch, out=out, progress=progress)
    first = int(round(equilibration / (run.dt * run.save_every)))
    if not 0 <= first < ensemble.ts.shape[-1] - 1:
        raise ValueError(f"equilibration = {equilibration} ps leaves no data in a run of t1 = {t1} ps")
    displacements = np.asarray(ensemble.positions[:, -1] - ensemble.positions[:, first])
    return transport.drift_mobility(displacements, float(ensemble.ts[0, -1] - ensemble.ts[0, first]),
                                    np.asarray(force))


def arrhenius(model, temperatures, **options):
    """Diffusion at each temperature (K) and the weighted Arrhenius fit ``D = D0 exp(-E_a / k_B T)``.

    ``options`` go to :func:`diffusion`. Returns ``(results, fit)``: the :class:`TransportResult`
    per temperature and the :class:`~jaxion.thermal.transport.ArrheniusFit` (``E_a`` in meV).
    """
    results = [diffusion(model, temperature, **options) for temperature in temperatures]
    values = np.array([float(r.diffusion.D_scalar) for r in results])
    errors = np.array([float(r.diffusion.D_scalar_error) for r in results])
    return results, transport.arrhenius_fit(np.asarray(temperatures, dtype=float), values, errors)
