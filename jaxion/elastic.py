"""Elastic continuum frameworks: a real crystal described by its density and elastic tensor.

Units: density in kg/m^3, elastic constants in GPa (Voigt notation, indices 1..6 = xx, yy, zz,
yz, xz, xy), sound speeds in m/s. The physical recoil matrix of Eq. 27,

    L = sum_u integral dOmega_n eta_u eta_u^T / (16 pi^2 rho v_u(n)^3)
      = integral dOmega_n sqrt(rho) Gamma(n)^(-3/2) / (16 pi^2),

with the Christoffel matrix ``Gamma(n)_ik = C_ijkl n_j n_l`` (eigenvalues ``rho v_u^2``,
eigenvectors ``eta_u``), is in SI, s^3/kg: the friction tensor ``H_U L H_U`` is then in kg/s
for a potential Hessian ``H_U`` in N/m. :meth:`jaxion.units.UnitSystem.recoil_from_si` turns it
into the dimensionless recoil matrix ``M`` of Eq. 23.
"""

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx

from . import _checks
from ._linalg import symmetric_power

_GPA = 1e9  # Pa

# Voigt index of the symmetric pair (i, j): 11->0, 22->1, 33->2, 23->3, 13->4, 12->5.
_VOIGT = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])


def cubic_voigt(c11, c12, c44):
    """The ``(6, 6)`` Voigt matrix of a cubic crystal (cube axes along x, y, z)."""
    c11, c12, c44 = (jnp.asarray(c, dtype=float) for c in (c11, c12, c44))
    normal = c12 * jnp.ones((3, 3)) + (c11 - c12) * jnp.eye(3)
    shear = c44 * jnp.eye(3)
    zeros = jnp.zeros((3, 3))
    return jnp.block([[normal, zeros], [zeros, shear]])


class ElasticContinuum(eqx.Module):
    """A homogeneous elastic solid: density and elastic tensor (Christoffel acoustics).

    Construct from cubic constants, ``ElasticContinuum(density, c11=, c12=, c44=)``, or a full
    Voigt matrix, ``ElasticContinuum(density, voigt=C)``; see also :meth:`isotropic` and
    :meth:`from_sound_speeds`.

    Attributes:
        density: mass density ``rho`` in kg/m^3.
        voigt: ``(6, 6)`` elastic stiffness in Voigt notation, GPa.

    Raises:
        ValueError: (concrete inputs only) non-positive or non-finite density; a Voigt matrix
            that is not ``(6, 6)``, not finite, not symmetric, or not positive definite (the
            Born stability criterion: every strain costs elastic energy).
    """

    density: jax.Array
    voigt: jax.Array

    def __init__(self, density, c11=None, c12=None, c44=None, voigt=None):
        cubic = (c11, c12, c44)
        if voigt is None:
            if any(c is None for c in cubic):
                raise ValueError("give either all of c11, c12, c44 (GPa) or a (6, 6) Voigt matrix")
            constants = jnp.stack([jnp.asarray(c, dtype=float) for c in cubic])
            _checks.require_finite("cubic elastic constants c11, c12, c44", constants)
            voigt = cubic_voigt(c11, c12, c44)
        elif any(c is not None for c in cubic):
            raise ValueError("give either c11, c12, c44 or voigt, not both")
        self.density = jnp.asarray(density, dtype=float)
        self.voigt = jnp.asarray(voigt, dtype=float)

    def __check_init__(self):
        _checks.require_shape("voigt", self.voigt, (6, 6))
        if not _checks.is_concrete(self.voigt):
            return
        voigt = _checks.as_numpy(self.voigt)
        scale = np.max(np.abs(voigt))
        if np.all(np.isfinite(voigt)) and not np.allclose(voigt, voigt.T, rtol=0.0, atol=1e-10 * scale):
            raise ValueError(f"the Voigt matrix must be symmetric, got\n{voigt}")
        if _checks.is_concrete(self):
            _checks.checked(self)

    def problems(self):
        """What makes the continuum invalid (traceable): a non-positive density, a non-finite Voigt
        matrix, or one that is not positive definite (Born stability criterion)."""
        smallest = jnp.linalg.eigvalsh(0.5 * (self.voigt + self.voigt.T))[0]
        return [
            _checks.positive("density (kg/m^3)", self.density),
            _checks.finite("voigt", self.voigt),
            _checks.problem(
                ~(smallest > 1e-12 * jnp.max(jnp.abs(self.voigt))),
                "the elastic tensor is mechanically unstable (Born criterion: the Voigt matrix must be "
                "positive definite); for cubic constants this needs c11 > |c12|, c11 + 2 c12 > 0 and c44 > 0",
                smallest,
            ),
        ]

    @classmethod
    def isotropic(cls, density, bulk, shear):
        """Isotropic solid from bulk modulus ``K`` and shear modulus ``G`` (GPa):
        ``c11 = K + 4G/3``, ``c12 = K - 2G/3``, ``c44 = G``."""
        bulk, shear = jnp.asarray(bulk, dtype=float), jnp.asarray(shear, dtype=float)
        return cls(density, c11=bulk + 4.0 * shear / 3.0, c12=bulk - 2.0 * shear / 3.0, c44=shear)

    @classmethod
    def from_sound_speeds(cls, density, longitudinal, transverse):
        """Isotropic solid from its sound speeds (m/s): ``c11 = rho v_L^2``, ``c44 = rho v_T^2``,
        ``c12 = c11 - 2 c44``."""
        density = jnp.asarray(density, dtype=float)
        c11 = density * jnp.asarray(longitudinal, dtype=float) ** 2 / _GPA
        c44 = density * jnp.asarray(transverse, dtype=float) ** 2 / _GPA
        return cls(density, c11=c11, c12=c11 - 2.0 * c44, c44=c44)

    @property
    def stiffness(self):
        """The ``(3, 3, 3, 3)`` tensor ``C_ijkl`` in GPa."""
        return self.voigt[_VOIGT[:, :, None, None], _VOIGT[None, None, :, :]]

    def christoffel(self, n):
        """``Gamma(n)_ik = C_ijkl n_j n_l`` (GPa) for unit directions ``n (..., 3)``: ``(..., 3, 3)``."""
        n = jnp.asarray(n, dtype=float)
        return jnp.einsum("ijkl,...j,...l->...ik", self.stiffness, n, n)

    def sound_speeds(self, n):
        """Acoustic speeds ``v_u(n) = sqrt(eig Gamma(n) / rho)`` in m/s, ``(..., 3)`` ascending."""
        return jnp.sqrt(jnp.linalg.eigvalsh(self.christoffel(n)) * _GPA / self.density)

    def recoil_density(self, n):
        """Integrand of Eq. 27 over the unit sphere, ``sqrt(rho) Gamma(n)^(-3/2) / (16 pi^2)``,
        in s^3/kg per steradian, for unit directions ``n (..., 3)``: ``(..., 3, 3)``."""
        gamma = self.christoffel(n) * _GPA
        return jnp.sqrt(self.density) * symmetric_power(gamma, -1.5) / (16.0 * jnp.pi**2)
