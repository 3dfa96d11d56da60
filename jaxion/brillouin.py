"""Quadrature rules over the Brillouin zone and the unit sphere.

All rules return plain arrays ``(points, weights)`` so that an integral becomes
``sum(weights * f(points))``; they are built with NumPy once (their sizes are static)
and are exact constants as far as JAX transformations are concerned.
"""

import numpy as np


def gauss_legendre(order, lower, upper):
    """Gauss-Legendre nodes and weights on ``[lower, upper]``.

    Returns:
        ``(nodes, weights)``, each ``(order,)``.
    """
    nodes, weights = np.polynomial.legendre.leggauss(order)
    half = 0.5 * (upper - lower)
    return lower + half * (nodes + 1.0), half * weights


def sphere_rule(n_theta=48, n_phi=96):
    """Product rule on the unit sphere: Gauss-Legendre in cos(theta), trapezoid in phi.

    ``integral dOmega f(n) ~= sum_k w_k f(n_k)``; spectrally accurate for smooth ``f``.

    Returns:
        ``directions (n_theta * n_phi, 3)`` unit vectors and ``weights`` summing to ``4 pi``.
    """
    cos_theta, w_theta = gauss_legendre(n_theta, -1.0, 1.0)
    phi = 2.0 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    directions = np.stack(
        [
            np.outer(sin_theta, np.cos(phi)),
            np.outer(sin_theta, np.sin(phi)),
            np.outer(cos_theta, np.ones_like(phi)),
        ],
        axis=-1,
    ).reshape(-1, 3)
    weights = np.outer(w_theta, np.full(n_phi, 2.0 * np.pi / n_phi)).reshape(-1)
    return directions, weights


def pyramid_rule(dim, n_radial=32, n_face=32, radial_max=1.0):
    """Brillouin-zone average ``(2 pi)^-d integral_{[-pi, pi]^d} f(q) d^d q`` centred on Gamma.

    The cube is split into ``2 d`` pyramids with apex at ``q = 0``; in each, ``q = t p`` with
    ``p`` on a face and Gauss-Legendre rules in ``t`` and on the face. The Jacobian
    ``t^(d-1)`` makes integrable ``1/q^2`` singularities at Gamma smooth, and
    ``radial_max < 1`` restricts the rule to the inner cube ``|q|_inf < pi * radial_max``,
    which concentrates all points where a rapidly decaying integrand lives.

    Args:
        dim: 1 or 3.
        n_radial: Gauss points in ``t``.
        n_face: Gauss points per face axis (3D only).
        radial_max: outer edge of the rule, ``0 < radial_max <= 1``.

    Returns:
        ``points (P, dim)`` and ``weights (P,)``; the weights sum to ``radial_max ** dim``.
    """
    if not 0.0 < radial_max <= 1.0:
        raise ValueError(f"radial_max must lie in (0, 1], got {radial_max}")
    t, w_t = gauss_legendre(n_radial, 0.0, radial_max)
    if dim == 1:
        points = np.concatenate([np.pi * t, -np.pi * t])[:, None]
        weights = np.concatenate([w_t, w_t]) / 2.0
        return points, weights
    if dim != 3:
        raise ValueError(f"dim must be 1 or 3, got {dim}")
    a, w_a = gauss_legendre(n_face, -np.pi, np.pi)
    ta, aa, bb = np.meshgrid(t, a, a, indexing="ij")
    weight = (np.einsum("i,j,k->ijk", w_t * t**2, w_a, w_a) * np.pi / (2.0 * np.pi) ** 3).reshape(-1)
    points, weights = [], []
    for axis in range(3):
        others = [ax for ax in range(3) if ax != axis]
        for sign in (1.0, -1.0):
            q = np.empty(ta.shape + (3,))
            q[..., axis] = sign * np.pi * ta
            q[..., others[0]] = ta * aa
            q[..., others[1]] = ta * bb
            points.append(q.reshape(-1, 3))
            weights.append(weight)
    return np.concatenate(points), np.concatenate(weights)


def periodic_grid(size, dim):
    """Wave vectors of a periodic lattice of ``size^dim`` cells, in FFT order.

    ``q = 2 pi n / size`` with ``n`` as ``numpy.fft.fftfreq`` orders it (the first point is Gamma).

    Returns:
        ``(size^dim, dim)``.
    """
    q1 = 2.0 * np.pi * np.fft.fftfreq(size)
    grids = np.meshgrid(*([q1] * dim), indexing="ij")
    return np.stack(grids, axis=-1).reshape(-1, dim)
