"""jaxion: a differentiable JAX simulator of ions moving through vibrating crystal frameworks.

float64 is switched on at import (``jax_enable_x64``); for float32 speed runs call
``jax.config.update("jax_enable_x64", False)`` after importing jaxion, or pass ``dtype`` to the
full-lattice simulation.
"""

import jax

jax.config.update("jax_enable_x64", True)

from .dissipation import (  # noqa: E402
    drag_tensor,
    loss_chain_closed_form,
    loss_low_speed,
    loss_perturbative,
    recoil_matrix,
)
from .elastic import ElasticContinuum, cubic_voigt  # noqa: E402
from .fitting import FitResult, FitWarning, fit, fit_multistart, sample_starts  # noqa: E402
from .full import FullLattice  # noqa: E402
from .kernel import AbsorbingBoundary, MemoryKernel, memory_kernel  # noqa: E402
from .lattice import Chain, Lattice, SimpleCubic  # noqa: E402
from .local import LocalDynamics  # noqa: E402
from .materials import MaterialInfo, load_materials, material_info  # noqa: E402
from .potentials import AbstractPairPotential, Gaussian, PairFunction, PairSum, Yukawa  # noqa: E402
from .screening import DragRanking, drag_measure, friction_tensor, rank_by_drag  # noqa: E402
from .simulation import (  # noqa: E402
    EnergyDriftWarning,
    IncompletePassError,
    NonFiniteTrajectoryError,
    PrecisionWarning,
    SinglePass,
    Trajectory,
    simulate,
    single_pass,
)
from .solvers import BlanesMoan, SymplecticComposition, VelocityVerlet  # noqa: E402
from .system import System  # noqa: E402
from .units import UnitSystem, spring_lattice_recoil  # noqa: E402

__all__ = [
    "AbstractPairPotential",
    "BlanesMoan",
    "Chain",
    "DragRanking",
    "ElasticContinuum",
    "FitResult",
    "FullLattice",
    "Gaussian",
    "Lattice",
    "MemoryKernel",
    "AbsorbingBoundary",
    "LocalDynamics",
    "MaterialInfo",
    "PairFunction",
    "PairSum",
    "SimpleCubic",
    "SinglePass",
    "SymplecticComposition",
    "System",
    "Trajectory",
    "UnitSystem",
    "VelocityVerlet",
    "Yukawa",
    "cubic_voigt",
    "drag_measure",
    "drag_tensor",
    "fit",
    "fit_multistart",
    "friction_tensor",
    "load_materials",
    "loss_chain_closed_form",
    "loss_low_speed",
    "loss_perturbative",
    "material_info",
    "memory_kernel",
    "rank_by_drag",
    "recoil_matrix",
    "sample_starts",
    "simulate",
    "single_pass",
    "NonFiniteTrajectoryError",
    "EnergyDriftWarning",
    "FitWarning",
    "IncompletePassError",
    "PrecisionWarning",
    "spring_lattice_recoil",
]
