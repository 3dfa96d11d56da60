"""Input validation at the API boundary.

Checks run only on concrete values: inside ``jax.jit``, ``jax.grad`` or ``jax.vmap`` the
fields are tracers and the checks are skipped, so validated constructors stay traceable.
"""

import jax
import numpy as np


def is_concrete(*values):
    """True when no leaf of ``values`` is a JAX tracer."""
    leaves = jax.tree_util.tree_leaves(values)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def as_numpy(value):
    """Concrete value as a float64 NumPy array."""
    return np.asarray(value, dtype=np.float64)


def require_finite(name, value):
    """Raise ``ValueError`` if ``value`` has NaN or infinite entries."""
    if is_concrete(value) and not np.all(np.isfinite(as_numpy(value))):
        raise ValueError(f"{name} must be finite, got {np.asarray(value)}")


def require_positive(name, value, allow_zero=False, allow_inf=False):
    """Raise ``ValueError`` unless every entry of ``value`` is positive (or zero / infinite if allowed)."""
    if not is_concrete(value):
        return
    array = as_numpy(value)
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} must not be NaN, got {array}")
    if not allow_inf and np.any(np.isinf(array)):
        raise ValueError(f"{name} must be finite, got {array}")
    bad = array < 0 if allow_zero else array <= 0
    if np.any(bad):
        allowed = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {allowed}, got {array}")


def require_shape(name, value, shape):
    """Raise ``ValueError`` unless ``value.shape`` matches ``shape`` (``None`` matches any size)."""
    actual = np.shape(value)
    if len(actual) != len(shape) or any(s is not None and s != a for s, a in zip(shape, actual)):
        expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {actual}")
