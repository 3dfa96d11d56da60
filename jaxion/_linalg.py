"""Small dense linear-algebra helpers shared by the framework models."""

import jax.numpy as jnp


def symmetric_power(matrix, power):
    """Matrix power ``A^p`` of symmetric positive-definite matrices.

    ``A^p = V diag(lambda^p) V^T`` with ``A = V diag(lambda) V^T``.

    Args:
        matrix: ``(..., n, n)`` symmetric positive definite.
        power: real exponent.

    Returns:
        ``(..., n, n)``.
    """
    eigenvalues, vectors = jnp.linalg.eigh(matrix)
    scaled = vectors * eigenvalues[..., None, :] ** power
    return scaled @ jnp.swapaxes(vectors, -1, -2)
