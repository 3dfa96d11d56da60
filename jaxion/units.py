"""Dimensionless <-> physical units (physics.md sections 1 and 4).

A :class:`UnitSystem` is fixed by the framework mass ``m`` (amu) and a spring scale ``K``
(eV/Å^2). From them:

    Omega = sqrt(K / m)               angular frequency (rad/ps)
    time unit   2 pi / Omega          (tau counts periods of Omega)
    length unit l = sqrt(hbar / (m Omega))
    energy unit hbar Omega

Physical quantities use meV, Å, ps, Å/ps, amu, kelvin, eV/Å (force), eV/Å^2 (curvature, i.e.
the potential Hessian H_U) and amu/ps (friction tensor Gamma, so Gamma / M_ion is a rate in
1/ps). The recoil matrix in physical units L (Eq. 27) is given in SI, s^3/kg: then
``Gamma = H_U L H_U`` is in kg/s when ``H_U`` is in N/m, the convention of
:mod:`jaxion.elastic`. The two forms of the drag are related by (physics.md section 4)

    M = hbar Omega^2 / (2 pi l^2) * L          (recoil matrix)
    Gamma = H_U L H_U = 2 pi m Omega * (H M H)  (friction tensor; H_U = K H)

Internally the module works in the consistent amu-Å-ps system, where energies are in
amu Å^2 / ps^2.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _checks

# CODATA 2022 recommended values (NIST, https://physics.nist.gov/constants); e, h and k_B are
# exact in the 2019 SI, the atomic mass constant is measured (relative uncertainty 3e-10).
ELEMENTARY_CHARGE = 1.602176634e-19  # C, so 1 eV = this many J
HBAR_SI = 6.62607015e-34 / (2.0 * math.pi)  # J s
BOLTZMANN_SI = 1.380649e-23  # J / K
ATOMIC_MASS_UNIT = 1.66053906892e-27  # kg

# The amu-Å-ps system: 1 amu Å^2 / ps^2 = 1.66053906660e-23 J.
_ENERGY_UNIT_SI = ATOMIC_MASS_UNIT * 1e-20 / 1e-24
EV = ELEMENTARY_CHARGE / _ENERGY_UNIT_SI  # 1 eV in amu Å^2 / ps^2 (~9648.53)
HBAR = HBAR_SI / (_ENERGY_UNIT_SI * 1e-12)  # amu Å^2 / ps (~6.35078)
BOLTZMANN = BOLTZMANN_SI / _ENERGY_UNIT_SI  # amu Å^2 / (ps^2 K)
NEWTON_PER_METRE_PER_EV_PER_A2 = ELEMENTARY_CHARGE / 1e-20  # 1 eV/Å^2 in N/m (~16.02)
KG_PER_S_PER_AMU_PER_PS = ATOMIC_MASS_UNIT / 1e-12  # 1 amu/ps in kg/s
S3_PER_KG_PER_PS3_PER_AMU = 1e-36 / ATOMIC_MASS_UNIT  # 1 ps^3/amu in s^3/kg

# The thermal API's meV-Å-ps system (physics.md 5.6): masses in meV ps^2/Å^2.
MEV = EV / 1000.0  # 1 meV in amu Å^2 / ps^2, so also 1 meV ps^2/Å^2 in amu (~9.6485)
BOLTZMANN_MEV = BOLTZMANN / MEV  # k_B in meV / K (~0.0861733)
HBAR_MEV_PS = HBAR / MEV  # hbar in meV ps (~0.658212)


class UnitSystem(eqx.Module):
    """The paper's units for a framework of mass ``mass`` (amu) and spring scale ``spring`` (eV/Å^2).

    Every ``to_*`` method maps a dimensionless value (array of any shape) to physical units and
    the matching ``from_*`` method inverts it; both are differentiable in ``mass`` and ``spring``.

    Attributes:
        mass: framework mass ``m`` in amu.
        spring: spring scale ``K`` in eV/Å^2.
    """

    mass: jax.Array
    spring: jax.Array

    def __init__(self, mass, spring):
        self.mass = jnp.asarray(mass, dtype=float)
        self.spring = jnp.asarray(spring, dtype=float)

    def __check_init__(self):
        _checks.require_positive("framework mass (amu)", self.mass)
        _checks.require_positive("spring scale K (eV/Å^2)", self.spring)

    @property
    def omega(self):
        """``Omega = sqrt(K / m)`` in rad/ps."""
        return jnp.sqrt(self.spring * EV / self.mass)

    @property
    def period(self):
        """Time unit ``2 pi / Omega`` in ps."""
        return 2.0 * jnp.pi / self.omega

    @property
    def length(self):
        """Length unit ``l = sqrt(hbar / (m Omega))`` in Å."""
        return jnp.sqrt(HBAR / (self.mass * self.omega))

    @property
    def energy(self):
        """Energy unit ``hbar Omega`` in meV."""
        return 1e3 * HBAR * self.omega / EV

    def to_mev(self, phi):
        """Energy ``Phi`` (units of ``hbar Omega``) -> meV."""
        return phi * self.energy

    def from_mev(self, energy):
        """Energy in meV -> ``Phi`` in units of ``hbar Omega``."""
        return energy / self.energy

    def to_angstrom(self, sigma):
        """Length ``sigma`` (units of ``l``) -> Å."""
        return sigma * self.length

    def from_angstrom(self, length):
        """Length in Å -> units of ``l``."""
        return length / self.length

    def to_ps(self, tau):
        """Time ``tau`` (periods) -> ps."""
        return tau * self.period

    def from_ps(self, time):
        """Time in ps -> ``tau`` (periods)."""
        return time / self.period

    def to_angstrom_per_ps(self, speed):
        """Speed ``d sigma / d tau`` -> Å/ps (``l / (2 pi / Omega)`` per unit)."""
        return speed * self.length / self.period

    def from_angstrom_per_ps(self, speed):
        """Speed in Å/ps -> ``d sigma / d tau``."""
        return speed * self.period / self.length

    def to_amu(self, mu):
        """Mass ratio ``mu = M / m`` -> amu."""
        return mu * self.mass

    def from_amu(self, mass):
        """Mass in amu -> ``mu = M / m``."""
        return mass / self.mass

    def to_kelvin(self, theta):
        """Thermal energy ``theta = k_B T / (hbar Omega)`` -> temperature in K."""
        return theta * HBAR * self.omega / BOLTZMANN

    def from_kelvin(self, temperature):
        """Temperature in K -> ``theta = k_B T / (hbar Omega)``."""
        return temperature * BOLTZMANN / (HBAR * self.omega)

    def to_ev_per_angstrom(self, force):
        """Force ``-grad_sigma Phi`` (units of ``hbar Omega / l``) -> eV/Å."""
        return force * HBAR * self.omega / (self.length * EV)

    def from_ev_per_angstrom(self, force):
        """Force in eV/Å -> units of ``hbar Omega / l``."""
        return force * self.length * EV / (HBAR * self.omega)

    def to_ev_per_angstrom2(self, hessian):
        """Curvature ``H`` (Hessian of ``Phi`` in ``sigma``) -> ``H_U`` in eV/Å^2 (``hbar Omega / l^2 = K``)."""
        return hessian * self.spring

    def from_ev_per_angstrom2(self, hessian):
        """Curvature ``H_U`` in eV/Å^2 -> dimensionless ``H``."""
        return hessian / self.spring

    def recoil_to_si(self, recoil):
        """Recoil matrix ``M`` (Eq. 23) -> ``L`` (Eq. 27) in s^3/kg: ``L = 2 pi l^2 M / (hbar Omega^2)``."""
        return recoil * self._recoil_scale * S3_PER_KG_PER_PS3_PER_AMU

    def recoil_from_si(self, recoil):
        """``L`` in s^3/kg -> recoil matrix ``M = hbar Omega^2 / (2 pi l^2) * L``."""
        return recoil / (self._recoil_scale * S3_PER_KG_PER_PS3_PER_AMU)

    @property
    def _recoil_scale(self):
        """``2 pi l^2 / (hbar Omega^2) = 2 pi / (m Omega^3)`` in ps^3/amu."""
        return 2.0 * jnp.pi * self.length**2 / (HBAR * self.omega**2)

    def to_amu_per_ps(self, drag):
        """Dimensionless drag ``H M H`` (friction term of Eq. 26) -> ``Gamma = 2 pi m Omega H M H``, amu/ps."""
        return drag * 2.0 * jnp.pi * self.mass * self.omega

    def from_amu_per_ps(self, friction):
        """Friction tensor ``Gamma`` in amu/ps -> dimensionless ``H M H``."""
        return friction / (2.0 * jnp.pi * self.mass * self.omega)

