"""Unit conversions: round trips, independent SI checks (scipy's CODATA constants) and the
M <-> L relation of physics.md section 4 checked against a spring lattice's elastic continuum."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import constants as sc

import jaxion  # noqa: F401  (enables float64)
from jaxion.response import spring_lattice_recoil
from jaxion.elastic import ElasticContinuum
from jaxion.lattice import SimpleCubic
from jaxion.units import UnitSystem

AMU = sc.physical_constants["atomic mass constant"][0]
EV_PER_A2 = sc.eV / sc.angstrom**2  # N/m

UNITS = UnitSystem(mass=16.0, spring=1.5)

# Tolerance of comparisons with scipy's constants: jaxion uses CODATA 2022; an older scipy with
# CODATA 2018 has an atomic mass constant 1.4e-9 (relative) smaller. Any real mistake (a factor
# 2 pi, a power of ten) is many orders of magnitude above this.
SI_RTOL = 5e-9


def _si_scales(mass_amu, spring_ev_a2):
    """Omega (1/s), l (m), hbar Omega (J) computed directly in SI."""
    omega = np.sqrt(spring_ev_a2 * EV_PER_A2 / (mass_amu * AMU))
    return omega, np.sqrt(sc.hbar / (mass_amu * AMU * omega)), sc.hbar * omega


def test_scales_match_si():
    # Independent route: scipy's CODATA constants in SI.
    omega, length, energy = _si_scales(16.0, 1.5)
    np.testing.assert_allclose(UNITS.omega, omega * 1e-12, rtol=SI_RTOL)
    np.testing.assert_allclose(UNITS.period, 2 * np.pi / omega / sc.pico, rtol=SI_RTOL)
    np.testing.assert_allclose(UNITS.length, length / sc.angstrom, rtol=SI_RTOL)
    np.testing.assert_allclose(UNITS.energy, energy / sc.eV * 1e3, rtol=SI_RTOL)
    np.testing.assert_allclose(UNITS.from_kelvin(300.0), sc.k * 300.0 / energy, rtol=SI_RTOL)
    np.testing.assert_allclose(UNITS.to_ev_per_angstrom(1.0), energy / length / sc.eV * sc.angstrom, rtol=SI_RTOL)
    # H_U = hbar Omega / l^2 H = K H
    np.testing.assert_allclose(UNITS.to_ev_per_angstrom2(1.0), energy / length**2 / EV_PER_A2, rtol=SI_RTOL)


@pytest.mark.parametrize(
    "forward, backward",
    [
        ("to_mev", "from_mev"),
        ("to_angstrom", "from_angstrom"),
        ("to_ps", "from_ps"),
        ("to_angstrom_per_ps", "from_angstrom_per_ps"),
        ("to_amu", "from_amu"),
        ("to_kelvin", "from_kelvin"),
        ("to_ev_per_angstrom", "from_ev_per_angstrom"),
        ("to_ev_per_angstrom2", "from_ev_per_angstrom2"),
        ("recoil_to_si", "recoil_from_si"),
        ("to_amu_per_ps", "from_amu_per_ps"),
    ],
)
def test_round_trip(forward, backward):
    # Pure multiplications and divisions: exact to a few ulps.
    x = jnp.array([[0.3, -1.2, 7.0], [2.5, 1e-3, 40.0]])
    np.testing.assert_allclose(getattr(UNITS, backward)(getattr(UNITS, forward)(x)), x, rtol=1e-13)


def test_recoil_and_friction_conversions_agree():
    """Gamma = H_U L H_U computed from the physical pieces equals the dimensionless H M H
    converted directly, and the drag force -H M H sigma' equals -Gamma dR/dt in eV/Å."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    recoil = a @ a.T + 3 * np.eye(3)  # an SPD "M"
    hessian = rng.normal(size=(3, 3))
    hessian = hessian + hessian.T
    drag = hessian @ recoil @ hessian
    # L in SI from M by L = 2 pi M / (m Omega^3) (physics.md section 4), independently in SI.
    omega, length, _ = _si_scales(16.0, 1.5)
    l_si = 2 * np.pi * recoil / (16.0 * AMU * omega**3)
    np.testing.assert_allclose(UNITS.recoil_to_si(recoil), l_si, rtol=SI_RTOL)
    # and M = hbar Omega^2 / (2 pi l^2) L
    np.testing.assert_allclose(sc.hbar * omega**2 / (2 * np.pi * length**2) * l_si, recoil, rtol=SI_RTOL)
    h_si = np.asarray(UNITS.to_ev_per_angstrom2(hessian)) * EV_PER_A2
    gamma_si = h_si @ l_si @ h_si  # kg/s
    np.testing.assert_allclose(UNITS.to_amu_per_ps(drag), gamma_si / (AMU / sc.pico), rtol=SI_RTOL)
    # Drag force: dimensionless (H M H) sigma' in units of hbar Omega / l, vs Gamma dR/dt.
    velocity = np.array([0.2, -0.7, 1.3])  # d sigma / d tau
    force = UNITS.to_ev_per_angstrom(drag @ velocity)
    gamma = np.asarray(UNITS.to_amu_per_ps(drag))  # amu/ps
    speed = np.asarray(UNITS.to_angstrom_per_ps(velocity))  # Å/ps
    force_from_gamma = gamma @ speed * AMU * sc.angstrom / sc.pico**2 / (sc.eV / sc.angstrom)
    np.testing.assert_allclose(force, force_from_gamma, rtol=SI_RTOL)


def _spring_continuum(mass, spacing, k1, k2):
    """Elastic continuum of a simple cubic central-spring lattice (SI density, GPa):
    c11 = (k1 + 2 k2)/a, c12 = c44 = k2/a, rho = m/a^3."""
    a = spacing * sc.angstrom
    k1, k2 = k1 * EV_PER_A2, k2 * EV_PER_A2
    return ElasticContinuum(mass * AMU / a**3, c11=(k1 + 2 * k2) / a / 1e9, c12=k2 / a / 1e9, c44=k2 / a / 1e9)


def test_long_wave_tensor_is_christoffel_over_density():
    # The continuum constants above, checked against the lattice rather than trusted:
    # omega^2 = Omega^2 (q a)^2 S(n) for the lattice and rho omega^2 = q^2 Gamma(n) for the
    # continuum, so Gamma(n) / rho = Omega^2 a^2 S(n) (S in units of K / m, a in metres).
    mass, spacing, k1, k2 = 16.0, 2.8, 1.5, 0.5
    units = UnitSystem(mass, k1)
    lattice = SimpleCubic(k1=1.0, k2=k2 / k1, spacing=units.from_angstrom(spacing))
    continuum = _spring_continuum(mass, spacing, k1, k2)
    n = np.random.default_rng(1).normal(size=(20, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    omega_si = float(units.omega) * 1e12
    expected = omega_si**2 * (spacing * sc.angstrom) ** 2 * np.asarray(lattice.long_wave_tensor(n))
    np.testing.assert_allclose(continuum.christoffel(n) * 1e9 / continuum.density, expected, rtol=SI_RTOL)


@pytest.mark.parametrize("spacing", [2.0, 3.5])
def test_spring_lattice_recoil_equals_continuum(spacing):
    """Lattice route (dimensionless M of SimpleCubic, converted) vs continuum route (Eq. 27 with
    the lattice's elastic constants). Both use the same sphere rule on smooth integrands, so they
    agree to rounding; 1e-9 is far below any units or formula mistake (factors of 2 pi etc.).
    L does not depend on the spacing (rho v^3 = m Omega^3 kappa^(3/2))."""
    from jaxion.brillouin import sphere_rule

    mass, k1, k2 = 7.0, 15.0 * 0.1, 5.0 * 0.1
    lattice_l = spring_lattice_recoil(mass, spacing, k1, k2)
    continuum = _spring_continuum(mass, spacing, k1, k2)
    directions, weights = sphere_rule(48, 96)
    continuum_l = np.einsum("p,pij->ij", weights, continuum.recoil_density(directions))
    np.testing.assert_allclose(lattice_l, continuum_l, rtol=1e-9, atol=1e-9 * np.abs(continuum_l).max())
    # The paper's lattice (k1 = 15, k2 = 5) has an isotropic M = m0 * identity.
    np.testing.assert_allclose(lattice_l, lattice_l[0, 0] * np.eye(3), atol=1e-9 * lattice_l[0, 0])


def test_paper_recoil_constant():
    # physics.md section 4: for k1 = 15, k2 = 5 (units of K), M = m0 * identity, m0 ~ 5.59e-4.
    units = UnitSystem(7.0, 0.1)
    m0 = units.recoil_from_si(spring_lattice_recoil(7.0, 2.0, 1.5, 0.5))[0, 0]
    np.testing.assert_allclose(m0, 5.59e-4, rtol=2e-3)  # the quoted value has 3 digits


def test_invalid_units():
    with pytest.raises(ValueError, match="mass"):
        UnitSystem(-1.0, 1.0)
    with pytest.raises(ValueError, match="spring"):
        UnitSystem(1.0, float("nan"))
