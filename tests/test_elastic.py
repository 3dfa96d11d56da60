"""Elastic continuum: Christoffel acoustics and the physical recoil matrix L of Eq. 27."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (enables float64)
from jaxion.brillouin import sphere_rule
from jaxion.elastic import ElasticContinuum, cubic_voigt

DIRECTIONS, WEIGHTS = sphere_rule(32, 64)
# An anisotropic cubic solid (Zener ratio 2 c44 / (c11 - c12) = 1.8) and an isotropic one.
RHO, C11, C12, C44 = 4500.0, 150.0, 60.0, 81.0
ISO_RHO, ISO_BULK, ISO_SHEAR = 3000.0, 60.0, 30.0


def recoil(continuum, directions=DIRECTIONS, weights=WEIGHTS):
    """L = integral dOmega recoil_density (sphere quadrature), (3, 3) in s^3/kg."""
    return jnp.einsum("p,pij->ij", weights, continuum.recoil_density(directions))


def test_isotropic_closed_form():
    """L = (1/v_L^3 + 2/v_T^3) / (12 pi rho) * identity. For an isotropic solid the integrand is
    a quadratic polynomial in n, integrated exactly by the rule: agreement to rounding."""
    v_l = np.sqrt((ISO_BULK + 4 * ISO_SHEAR / 3) * 1e9 / ISO_RHO)
    v_t = np.sqrt(ISO_SHEAR * 1e9 / ISO_RHO)
    expected = (1 / v_l**3 + 2 / v_t**3) / (12 * np.pi * ISO_RHO) * np.eye(3)
    scale = expected[0, 0]
    for solid in (
        ElasticContinuum.isotropic(ISO_RHO, ISO_BULK, ISO_SHEAR),
        ElasticContinuum.from_sound_speeds(ISO_RHO, v_l, v_t),
        # cubic with c11 - c12 = 2 c44 is isotropic
        ElasticContinuum(ISO_RHO, c11=ISO_BULK + 40.0, c12=ISO_BULK - 20.0, c44=ISO_SHEAR),
    ):
        np.testing.assert_allclose(recoil(solid), expected, rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(solid.sound_speeds(DIRECTIONS[:5]), np.tile([v_t, v_t, v_l], (5, 1)), rtol=1e-12)


def test_cubic_speeds_along_high_symmetry_directions():
    """Closed-form rho v^2 of a cubic crystal along [100], [110], [111] (transverse first)."""
    solid = ElasticContinuum(RHO, c11=C11, c12=C12, c44=C44)
    n = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=float)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    expected = np.sort(
        [
            [C44, C44, C11],
            [C44, (C11 - C12) / 2, (C11 + C12 + 2 * C44) / 2],
            [(C11 - C12 + C44) / 3, (C11 - C12 + C44) / 3, (C11 + 2 * C12 + 4 * C44) / 3],
        ],
        axis=1,
    )
    np.testing.assert_allclose(np.linalg.eigvalsh(solid.christoffel(n)), expected, rtol=1e-13)
    np.testing.assert_allclose(solid.sound_speeds(n), np.sqrt(expected * 1e9 / RHO), rtol=1e-13)


def test_voigt_input_equals_cubic_input():
    voigt = np.zeros((6, 6))
    voigt[:3, :3] = C12
    voigt[np.arange(3), np.arange(3)] = C11
    voigt[np.arange(3, 6), np.arange(3, 6)] = C44
    a = ElasticContinuum(RHO, voigt=voigt)
    b = ElasticContinuum(RHO, c11=C11, c12=C12, c44=C44)
    np.testing.assert_array_equal(a.voigt, b.voigt)
    np.testing.assert_allclose(recoil(a), recoil(b), rtol=1e-14)


def _rotate_voigt(voigt, rotation):
    """Rotate a Voigt matrix through the full tensor C'_ijkl = R_ia R_jb R_kc R_ld C_abcd."""
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    full = np.zeros((3, 3, 3, 3))
    for a, (i, j) in enumerate(pairs):
        for b, (k, l) in enumerate(pairs):
            for p, q in ((i, j), (j, i)):
                for r, s in ((k, l), (l, k)):
                    full[p, q, r, s] = voigt[a, b]
    rotated = np.einsum("ia,jb,kc,ld,abcd->ijkl", rotation, rotation, rotation, rotation, full)
    return np.array([[rotated[i, j, k, l] for k, l in pairs] for i, j in pairs])


def test_rotated_crystal():
    """A rotated cubic crystal (full Voigt matrix, all 21 entries non-zero) has L' = R L R^T
    and speeds v'(R n) = v(n). The rotated integrand is not aligned with the rule's axes, so
    the rule's own error enters: at 32 x 64 points it is below 1e-9 for this smooth integrand."""
    rotation = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    cubic = ElasticContinuum(RHO, c11=C11, c12=C12, c44=C44)
    rotated = ElasticContinuum(RHO, voigt=_rotate_voigt(np.asarray(cubic.voigt), rotation))
    n = DIRECTIONS[:7]
    np.testing.assert_allclose(rotated.sound_speeds(n @ rotation.T), cubic.sound_speeds(n), rtol=1e-12)
    expected = rotation @ np.asarray(recoil(cubic)) @ rotation.T
    np.testing.assert_allclose(recoil(rotated), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_scaling_laws():
    """L ~ rho^(1/2) C^(-3/2) at fixed elastic constants, and L ~ 1/rho at fixed sound speeds
    (L = sum eta eta^T / (16 pi^2 rho v^3)). Exact up to rounding."""
    base = recoil(ElasticContinuum(RHO, c11=C11, c12=C12, c44=C44))
    denser = recoil(ElasticContinuum(4 * RHO, c11=C11, c12=C12, c44=C44))
    stiffer = recoil(ElasticContinuum(RHO, c11=4 * C11, c12=4 * C12, c44=4 * C44))
    both = recoil(ElasticContinuum(4 * RHO, c11=4 * C11, c12=4 * C12, c44=4 * C44))  # same speeds
    np.testing.assert_allclose(denser, 2.0 * base, rtol=1e-12)
    np.testing.assert_allclose(stiffer, base / 8.0, rtol=1e-12)
    np.testing.assert_allclose(both, base / 4.0, rtol=1e-12)


@pytest.mark.parametrize("params", [(RHO, C11, C12, C44), (ISO_RHO, ISO_BULK + 40.0, ISO_BULK - 20.0, ISO_SHEAR)])
def test_gradients_match_finite_differences(params):
    """jax.grad of tr L (through the custom JVP of the matrix power, including the isotropic
    case with degenerate transverse modes) vs central differences with relative step 1e-4:
    truncation ~1e-8 relative, rounding ~1e-12; tolerance 1e-6."""

    def trace_l(p):
        return jnp.trace(recoil(ElasticContinuum(p[0], c11=p[1], c12=p[2], c44=p[3]))) * 1e16

    p = jnp.asarray(params)
    grad = jax.grad(trace_l)(p)
    assert np.all(np.isfinite(grad))
    for i in range(4):
        h = 1e-4 * p[i]
        step = jnp.zeros(4).at[i].set(h)
        fd = (trace_l(p + step) - trace_l(p - step)) / (2 * h)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-6, atol=1e-9 * abs(trace_l(p) / p[i]))


def test_vectorised_and_jittable():
    solid = ElasticContinuum(RHO, c11=C11, c12=C12, c44=C44)
    n = DIRECTIONS[:12].reshape(3, 4, 3)
    assert solid.christoffel(n).shape == (3, 4, 3, 3)
    assert solid.recoil_density(n).shape == (3, 4, 3, 3)
    speeds = solid.sound_speeds(n)
    assert speeds.shape == (3, 4, 3) and np.all(np.diff(speeds, axis=-1) >= 0)
    jitted = jax.jit(lambda rho, c44: recoil(ElasticContinuum(rho, c11=C11, c12=C12, c44=c44)))
    expected = recoil(solid)  # cubic symmetry makes L a multiple of the identity
    np.testing.assert_allclose(jitted(RHO, C44), expected, rtol=1e-13, atol=1e-13 * expected[0, 0])
    batch = jax.vmap(lambda rho: jnp.trace(recoil(ElasticContinuum(rho, c11=C11, c12=C12, c44=C44))))
    expected_traces = jnp.trace(recoil(solid)) * jnp.array([1.0, 2.0])  # L ~ rho^(1/2)
    np.testing.assert_allclose(batch(jnp.array([RHO, 4 * RHO])), expected_traces, rtol=1e-12)


def test_recoil_matrix_dispatch():
    """jaxion.response.recoil_matrix integrates any framework's recoil_density."""
    from jaxion.response import recoil_matrix

    solid = ElasticContinuum(RHO, c11=C11, c12=C12, c44=C44)
    directions, weights = sphere_rule(24, 48)
    expected = recoil(solid, directions, weights)
    np.testing.assert_allclose(recoil_matrix(solid, n_theta=24, n_phi=48), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(density=-1.0, c11=C11, c12=C12, c44=C44), "density"),
        (dict(density=float("nan"), c11=C11, c12=C12, c44=C44), "density"),
        (dict(density=RHO, c11=C11, c12=C12, c44=-5.0), "unstable"),
        (dict(density=RHO, c11=C11, c12=C11 + 1.0, c44=C44), "unstable"),  # c11 < c12
        (dict(density=RHO, c11=C11, c12=-0.6 * C11, c44=C44), "unstable"),  # c11 + 2 c12 < 0
        (dict(density=RHO, c11=float("nan"), c12=C12, c44=C44), "finite"),
        (dict(density=RHO, c11=C11, c12=C12), "c11, c12, c44"),
        (dict(density=RHO, voigt=np.eye(3)), "shape"),
        (dict(density=RHO, voigt=np.eye(6), c11=C11, c12=C12, c44=C44), "not both"),
        (dict(density=RHO, voigt=np.eye(6) + np.triu(np.ones((6, 6)), 1)), "symmetric"),
        (dict(density=RHO, voigt=np.where(np.eye(6) > 0, np.inf, 0.0)), "finite"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ElasticContinuum(**kwargs)


def test_cubic_voigt_layout():
    voigt = np.asarray(cubic_voigt(3.0, 1.0, 2.0))
    assert voigt[0, 0] == voigt[2, 2] == 3.0 and voigt[0, 1] == voigt[1, 2] == 1.0
    assert voigt[3, 3] == voigt[5, 5] == 2.0 and voigt[0, 3] == voigt[3, 4] == 0.0
