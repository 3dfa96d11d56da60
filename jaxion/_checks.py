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


def require_integer(name, value, low=None, high=None):
    """Raise ``ValueError`` unless ``value`` is an integer (not a bool) within ``[low, high]``."""
    is_integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_integer or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in [{low}, {'inf' if high is None else high}]" if low is not None or high is not None else ""
        raise ValueError(f"{name} must be an integer{bounds}, got {value!r}")


def require_run_length(t1, dt):
    """Raise ``ValueError`` unless ``t1`` and ``dt`` are concrete positive numbers (they fix the
    number of steps of a solve, so they cannot be traced; vmap over the state instead)."""
    if not is_concrete(t1, dt):
        raise ValueError("t1 and dt must be concrete numbers (they fix the number of steps); vmap over the state")
    require_positive("t1", t1)
    require_positive("dt", dt)
