"""Quadrature rules: Gauss-Legendre, the Gamma-centred pyramid rule, the sphere rule, FFT meshes.

References are closed forms: moments of polynomials and trigonometric functions over the zone,
Bessel functions, Watson's integral (a 1/q^2 singularity at Gamma) and the orthonormality of
spherical harmonics.
"""

import numpy as np
import pytest
from scipy import special

from jaxion.brillouin import gauss_legendre, periodic_grid, pyramid_rule, sphere_rule


def bz_average(f, *args, **kwargs):
    q, w = pyramid_rule(*args, **kwargs)
    return np.sum(w * f(q))


def test_gauss_legendre_polynomials():
    # an n-point rule is exact for degree 2n - 1: only rounding remains
    x, w = gauss_legendre(5, -1.0, 3.0)
    for degree in range(10):
        np.testing.assert_allclose(np.sum(w * x**degree), (3.0 ** (degree + 1) - (-1.0) ** (degree + 1)) / (degree + 1), rtol=1e-13)


def test_pyramid_rule_weights_and_symmetry():
    for dim in (1, 3):
        for radial_max in (1.0, 0.3):
            q, w = pyramid_rule(dim, 6, 5, radial_max)
            assert q.shape == (len(w), dim)
            np.testing.assert_allclose(np.sum(w), radial_max**dim, rtol=1e-13)
            assert np.max(np.abs(q)) <= np.pi * radial_max + 1e-14
    # the rule is symmetric under q -> -q (needed for real Green's functions): the point set is closed
    q, _ = pyramid_rule(3, 4, 3)
    keys = {tuple(np.round(p, 12)) for p in q}
    assert all(tuple(np.round(-p, 12)) in keys for p in q)


def test_pyramid_rule_polynomials_and_trig():
    # in pyramid coordinates q = t (pi, a, b) a polynomial stays a polynomial: exact to rounding.
    # BZ averages: <qx^2> = pi^2/3, <qx^2 qy^4> = pi^6/15, <qx qy> = 0
    q2 = bz_average(lambda q: q[:, 0] ** 2, 3, 8, 8)
    np.testing.assert_allclose(q2, np.pi**2 / 3, rtol=1e-13)
    np.testing.assert_allclose(bz_average(lambda q: q[:, 0] ** 2 * q[:, 1] ** 4, 3, 8, 8), np.pi**6 / 15, rtol=1e-12)
    assert abs(bz_average(lambda q: q[:, 0] * q[:, 1], 3, 8, 8)) < 1e-14
    # trig: <exp(cos qx + cos qy + cos qz)> = I0(1)^3, <cos(qx) cos(2 qz)> = 0; smooth -> spectral
    # convergence, 24 points per axis reach 1e-12
    np.testing.assert_allclose(bz_average(lambda q: np.exp(np.cos(q).sum(-1)), 3, 24, 24), special.i0(1.0) ** 3, rtol=1e-12)
    assert abs(bz_average(lambda q: np.cos(q[:, 0]) * np.cos(2 * q[:, 2]), 3, 24, 24)) < 1e-13
    np.testing.assert_allclose(bz_average(lambda q: np.exp(np.cos(q[:, 0])), 1, 24), special.i0(1.0), rtol=1e-13)
    np.testing.assert_allclose(bz_average(lambda q: q[:, 0] ** 4, 1, 4), np.pi**4 / 5, rtol=1e-13)


def test_pyramid_rule_integrable_singularity_watson():
    # Watson's integral: <1 / (3 - cos qx - cos qy - cos qz)> over the zone (a 2/q^2 singularity
    # at Gamma) = sqrt6 / (96 pi^3) Gamma(1/24) Gamma(5/24) Gamma(7/24) Gamma(11/24) = 0.50546...
    # The t^2 Jacobian makes the integrand analytic in each pyramid: 24 points reach 1e-10
    watson = np.sqrt(6) / (96 * np.pi**3) * np.prod(special.gamma(np.array([1, 5, 7, 11]) / 24))
    np.testing.assert_allclose(watson, 0.505462019717326, rtol=1e-14)
    value = bz_average(lambda q: 1 / (3 - np.cos(q).sum(-1)), 3, 24, 24)
    np.testing.assert_allclose(value, watson, rtol=1e-10)
    # and 1/|q|^2 restricted to the inner cube scales as radial_max (dimensional analysis)
    full = bz_average(lambda q: 1 / np.sum(q**2, -1), 3, 12, 12)
    inner = bz_average(lambda q: 1 / np.sum(q**2, -1), 3, 12, 12, radial_max=0.25)
    np.testing.assert_allclose(inner, 0.25 * full, rtol=1e-12)


def test_pyramid_rule_bad_arguments():
    with pytest.raises(ValueError, match="radial_max"):
        pyramid_rule(3, 4, 4, radial_max=0.0)
    with pytest.raises(ValueError, match="dim"):
        pyramid_rule(2, 4, 4)


def test_sphere_rule_spherical_harmonics():
    # orthonormality int Y_lm conj(Y_l'm') dOmega = delta for l <= 6: the product has degree <= 12
    # in cos(theta) (Gauss with 8 points is exact to degree 15) and |m| <= 12 in phi (trapezoid
    # with 16 points exact below 16): rounding only
    n, w = sphere_rule(8, 16)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.sum(w), 4 * np.pi, rtol=1e-14)
    theta, phi = np.arccos(n[:, 2]), np.arctan2(n[:, 1], n[:, 0])
    lm = [(l, m) for l in range(7) for m in range(-l, l + 1)]
    y = np.stack([special.sph_harm_y(l, m, theta, phi) for l, m in lm])
    gram = (y * w) @ y.conj().T
    np.testing.assert_allclose(gram, np.eye(len(lm)), atol=1e-13)
    # <n n^T> over the sphere = 4 pi / 3 identity
    np.testing.assert_allclose(np.einsum("p,pi,pj->ij", w, n, n), 4 * np.pi / 3 * np.eye(3), atol=1e-13)


def test_periodic_grid():
    q = periodic_grid(4, 3)
    assert q.shape == (64, 3)
    np.testing.assert_array_equal(q[0], 0.0)
    np.testing.assert_allclose(np.unique(q), 2 * np.pi * np.array([-2, -1, 0, 1]) / 4)
    # FFT order: the flattened index is (i, j, k) row-major with q_i = 2 pi fftfreq(4)[i]
    np.testing.assert_allclose(q[1 * 16 + 2 * 4 + 3], 2 * np.pi * np.fft.fftfreq(4)[[1, 2, 3]])
    np.testing.assert_allclose(periodic_grid(5, 1)[:, 0], 2 * np.pi * np.fft.fftfreq(5))
