"""Small dense linear-algebra helpers shared by the framework models."""

import functools

import jax
import jax.numpy as jnp


def _power_of_eigenpairs(matrix, power):
    eigenvalues, vectors = jnp.linalg.eigh(matrix)
    scaled = vectors * eigenvalues[..., None, :] ** power
    return scaled @ jnp.swapaxes(vectors, -1, -2), eigenvalues, vectors


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def symmetric_power(matrix, power):
    """Matrix power ``A^p`` of symmetric positive-definite matrices.

    ``A^p = V diag(lambda^p) V^T`` with ``A = V diag(lambda) V^T``. The derivative uses the
    Daleckii-Krein formula ``d(A^p) = V [L o (V^T dA V)] V^T`` with the divided differences
    ``L_ij = (lambda_i^p - lambda_j^p) / (lambda_i - lambda_j)`` (``p lambda^(p-1)`` for
    (near-)equal eigenvalues), so it stays finite at degenerate eigenvalues where
    differentiating ``eigh`` gives NaN.

    Args:
        matrix: ``(..., n, n)`` symmetric positive definite.
        power: real exponent (a Python number).

    Returns:
        ``(..., n, n)``.
    """
    return _power_of_eigenpairs(matrix, power)[0]


@symmetric_power.defjvp
def _symmetric_power_jvp(power, primals, tangents):
    (matrix,), (tangent,) = primals, tangents
    result, eigenvalues, vectors = _power_of_eigenpairs(matrix, power)
    lam_i, lam_j = eigenvalues[..., :, None], eigenvalues[..., None, :]
    difference = lam_i - lam_j
    scale = jnp.max(jnp.abs(eigenvalues), axis=-1)[..., None, None]
    close = jnp.abs(difference) <= 1e-5 * scale
    midpoint = 0.5 * (lam_i + lam_j)
    divided = (lam_i**power - lam_j**power) / jnp.where(close, 1.0, difference)
    weights = jnp.where(close, power * midpoint ** (power - 1.0), divided)
    vt = jnp.swapaxes(vectors, -1, -2)
    rotated = vt @ (0.5 * (tangent + jnp.swapaxes(tangent, -1, -2))) @ vectors
    return result, vectors @ (weights * rotated) @ vt


def inverse_3x3(matrix):
    """Inverse of ``(..., 3, 3)`` matrices by the adjugate, ``A^-1 = adj(A) / det(A)``.

    Several times faster than ``jnp.linalg.inv`` for large batches of 3x3 blocks (one per wave
    vector); exact in exact arithmetic and differentiable.
    """
    a = lambda i, j: matrix[..., i, j]
    cofactor = lambda i, j: (
        a((i + 1) % 3, (j + 1) % 3) * a((i + 2) % 3, (j + 2) % 3)
        - a((i + 1) % 3, (j + 2) % 3) * a((i + 2) % 3, (j + 1) % 3)
    )
    cofactors = jnp.stack([jnp.stack([cofactor(i, j) for j in range(3)], axis=-1) for i in range(3)], axis=-2)
    determinant = jnp.sum(matrix[..., 0, :] * cofactors[..., 0, :], axis=-1)
    return jnp.swapaxes(cofactors, -1, -2) / determinant[..., None, None]
