"""Thermal motion (physics.md section 5): the framework at a temperature drags and kicks the ion.

Physical units throughout: Å, ps, meV, kelvin, masses in meV ps^2/Å^2 (``from_amu``). Layers,
lowest first: the model and its travelling neighbour stencil; the thermal lattice state
(normal modes) and the landscapes (rigid, relaxed, linear response); the three descriptions
(white-noise Langevin, coloured noise, full lattice); the transport estimators; and the
protocols (``diffusion``, ``drift_mobility``, ``arrhenius``) that run ensembles of them.

The three descriptions are descriptions of :mod:`jaxion.dynamics` too: built with a step ``dt``
(ps), ``jaxion.dynamics.run(dynamics, state, t1, saveat=..., stop=..., key=...)`` integrates any of
them into a :class:`jaxion.trajectory.Trajectory` in ps (:mod:`jaxion.thermal.trajectory`).
"""

from ..units import BOLTZMANN_MEV, HBAR_MEV_PS, MEV
from .coloured import ColouredNoiseDynamics, run_coloured
from .ensemble import FailedTrajectoryWarning, run_ensemble, trajectory_keys
from .full import FullThermalDynamics, FullThermalRun, finite_size, run_full_thermal
from .landscape import (
    LinearResponseLandscape,
    RelaxedLandscape,
    RigidLandscape,
    StaticRelaxation,
    linear_response_turnover,
    migration_barrier,
    migration_barriers,
    relaxed_landscape,
)
from .langevin import LangevinDynamics, LangevinRun, LangevinSplitting, run_langevin
from .model import IonInFramework, follow_up_model, from_amu, maxwell_velocity, thermal_energy, to_amu
from .modes import ThermalModes, displacement_covariance, thermal_modes, velocity_covariance
from .neighbours import NeighbourSites
from .protocols import DESCRIPTIONS, ThermalRun, TransportResult, arrhenius, diffusion, drift_mobility, thermal_ensemble
from .trajectory import NonFiniteThermalRunError, ThermalTrajectory
from .transport import (
    arrhenius_fit,
    block_mean,
    diffusion_tensor,
    einstein_mobility,
    kinetic_temperature,
    mean_squared_displacement,
    nernst_einstein_conductivity,
)
from .transport import drift_mobility as drift_mobility_estimate

__all__ = [
    "BOLTZMANN_MEV", "HBAR_MEV_PS", "MEV", "ColouredNoiseDynamics", "run_coloured", "FailedTrajectoryWarning",
    "run_ensemble", "trajectory_keys", "FullThermalDynamics", "FullThermalRun", "finite_size", "run_full_thermal",
    "LinearResponseLandscape", "RelaxedLandscape", "RigidLandscape", "StaticRelaxation", "linear_response_turnover",
    "migration_barrier", "migration_barriers", "relaxed_landscape", "LangevinDynamics", "LangevinRun",
    "LangevinSplitting", "run_langevin", "IonInFramework", "follow_up_model", "from_amu", "maxwell_velocity",
    "thermal_energy", "to_amu",
    "ThermalModes", "displacement_covariance", "thermal_modes", "velocity_covariance", "NeighbourSites",
    "DESCRIPTIONS", "ThermalRun", "TransportResult", "arrhenius", "diffusion", "drift_mobility", "thermal_ensemble",
    "NonFiniteThermalRunError", "ThermalTrajectory", "arrhenius_fit", "block_mean", "diffusion_tensor",
    "einstein_mobility", "kinetic_temperature", "mean_squared_displacement", "nernst_einstein_conductivity",
    "drift_mobility_estimate",
]
