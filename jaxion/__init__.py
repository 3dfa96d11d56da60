"""jaxion: a differentiable JAX simulator of ions moving through vibrating crystal frameworks.

float64 is switched on at import (``jax_enable_x64``); for float32 speed runs call
``jax.config.update("jax_enable_x64", False)`` after importing jaxion, or pass ``dtype`` to the
full-lattice simulation.
"""

import importlib
import os
import sys

# float64 before any array exists. jax reads JAX_ENABLE_X64 when it is first imported; the package
# itself imports nothing heavy (public names load on first use, below), so `jaxion --help` starts
# without jax.
if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_enable_x64", True)
else:
    os.environ["JAX_ENABLE_X64"] = "1"

# Public name -> the module that defines it, imported on first access (PEP 562).
_EXPORTS = {
    "dynamics": ("AbstractDiffraxDynamics", "AbstractDynamics", "AbstractStop", "AnyStop", "CrossedPlane", "LeftRegion",
                 "TimeReached", "Trapped", "run", "run_from"),
    "dissipation": ("drag_tensor", "loss_chain_closed_form", "loss_low_speed", "loss_perturbative"),
    "elastic": ("ElasticContinuum", "cubic_voigt"),
    "fitting": ("FitResult", "FitWarning", "fit", "fit_multistart", "sample_starts"),
    "full": ("FullDynamics", "FullLattice"),
    "kernel": ("AbsorbingBoundary", "KernelDynamics", "MemoryKernel", "memory_kernel"),
    "lattice": ("Chain", "Lattice", "SimpleCubic"),
    "local": ("LocalDynamics",),
    "materials": ("MaterialInfo", "load_materials", "material_info"),
    "potentials": ("AbstractPairPotential", "Gaussian", "PairFunction", "PairSum", "Yukawa"),
    "screening": ("DragRanking", "drag_measure", "friction_tensor", "rank_by_drag"),
    "response": ("recoil_matrix", "spring_lattice_recoil"),
    "run_checks": ("FiniteBoxWarning",),
    "simulation": ("EnergyDriftWarning", "IncompletePassError", "NonFiniteTrajectoryError", "PrecisionWarning",
                   "SinglePass", "simulate", "single_pass"),
    "solvers": ("BlanesMoan", "SymplecticComposition", "VelocityVerlet"),
    "system": ("System",),
    "trajectory": ("Trajectory",),
    "units": ("UnitSystem",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'jaxion' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = sorted(_MODULE_OF)
