"""The framework's response to a moving ion, independent of any potential: the recoil matrix.

The ion transfers momentum to the framework's long-wavelength sound; the low-speed loss (Eq. 23),
the time-local drag (Eq. 26) and the thermal friction (physics.md 5.2) all contract the potential's
Hessian with one sphere integral over the framework's acoustic branches,

    M = integral dOmega_n  recoil_density(n),                                     (3, 3)

which is Eq. 23's ``sum_u eta_u eta_u^T / (32 pi^3 kappa_u(n)^(3/2))`` for a spring
:class:`~jaxion.lattice.Lattice` (dimensionless) and Eq. 27's Christoffel form for an
:class:`~jaxion.elastic.ElasticContinuum` (SI, s^3/kg). This module is the framework layer: the
descriptions (``local``, ``thermal``) and the perturbative theory (:mod:`jaxion.dissipation`) use it.
"""

import jax.numpy as jnp
import numpy as np

from . import _checks
from .brillouin import sphere_rule
from .lattice import SimpleCubic
from .units import UnitSystem


def recoil_matrix(framework, n_theta=64, n_phi=128):
    """Recoil matrix, the sphere integral of ``framework.recoil_density(n)``.

    For a jaxion :class:`~jaxion.lattice.Lattice` this is Eq. 23 (dimensionless ``M``),
    ``M = integral dOmega sum_u eta_u eta_u^T / (32 pi^3 kappa_u(n)^(3/2))``; for an elastic
    continuum it is Eq. 27 (``L``, physical units). The default product rule (Gauss-Legendre in
    ``cos theta`` times trapezoid in ``phi``) is converged to about 1e-6 relative or better for
    smooth anisotropy such as the paper's cubic lattice.

    Args:
        framework: any object with ``recoil_density(n (P, 3)) -> (P, 3, 3)``.
        n_theta, n_phi: orders of the sphere rule.

    Returns:
        ``(3, 3)`` symmetric positive-definite matrix.
    """
    if hasattr(framework, "problems"):
        framework = _checks.checked(framework)
    directions, weights = sphere_rule(n_theta, n_phi)
    return jnp.einsum("p,pij->ij", jnp.asarray(weights), framework.recoil_density(jnp.asarray(directions)))


def spring_lattice_recoil(mass, spacing, k1, k2, n_theta=48, n_phi=96):
    """Physical ``L`` (s^3/kg) of a simple cubic spring lattice, through the dimensionless model.

    The lattice (framework mass ``mass`` amu, lattice constant ``spacing`` Å, central springs
    ``k1`` to the 6 nearest and ``k2`` to the 12 next-nearest neighbours, eV/Å^2) is made
    dimensionless with ``K = k1`` (:class:`~jaxion.units.UnitSystem`); its recoil matrix ``M``
    (Eq. 23, :func:`recoil_matrix` of ``SimpleCubic``) is converted with ``L = 2 pi l^2 M / (hbar Omega^2)``.

    Returns:
        ``(3, 3)``.
    """
    units = UnitSystem(mass, k1)
    lattice = SimpleCubic(k1=1.0, k2=jnp.asarray(k2) / units.spring, spacing=units.from_angstrom(spacing))
    return units.recoil_to_si(recoil_matrix(lattice, n_theta=n_theta, n_phi=n_phi))


def max_sound_speed(lattice):
    """The largest long-wave sound speed of ``lattice`` over directions (``l`` per period), a float:
    the maximum of :meth:`~jaxion.lattice.Lattice.sound_speeds` over a 12 x 24 sphere rule (3D) or
    along the chain (1D). It sizes the boxes no sound returns through within a run."""
    directions = sphere_rule(12, 24)[0] if lattice.dim == 3 else np.ones((1, 1))
    return float(jnp.max(lattice.sound_speeds(jnp.asarray(directions))))
