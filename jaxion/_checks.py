"""Input validation at the API boundary, eagerly and under ``jax.jit``, ``jax.vmap`` and ``jax.grad``.

Two kinds of check:

* ``require_*``: options that fix shapes or run lengths (sizes, step counts, names). They must be
  concrete, and raise ``ValueError`` at once; on traced values they are skipped.
* problems: ``(pred, message, value)`` triples built with ``jnp`` (:func:`positive`,
  :func:`finite`, :func:`problem`), so they can be evaluated on traced parameters. :func:`enforce`
  raises ``ValueError(message)`` when the predicates are concrete (eager calls, and ``jax.grad``
  outside ``jit``), and otherwise threads an ``equinox.error_if`` onto the value it returns: the
  compiled program then stops with the same message (``jax.errors.JaxRuntimeError`` under
  ``jax.jit``, ``equinox.EquinoxRuntimeError`` under ``eqx.filter_jit`` or a bare ``jax.vmap``;
  under ``vmap`` it fires when any member fails). The check is kept alive under ``jit(grad)``
  too: the tangent is scaled by a checked one, so the backward pass depends on the check.

Models say what makes them invalid in a ``problems()`` method; ``__check_init__`` enforces it on
concrete fields, and each entry point enforces it again on the (possibly traced) model it is
given, with a ``lax.cond`` on a few scalars per call (not per step).
"""

import functools
import os
import sys
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


# Source folders whose frames a warning skips to reach the user's line: this package and the libraries
# whose wrappers (equinox modules' methods, jit) sit between it and the user.
_LIBRARY_ROOTS = tuple(
    os.path.dirname(module.__file__) + os.sep for module in (sys.modules[__package__], eqx, jax)
)


def warn(message, category):
    """``warnings.warn(message, category)`` attributed to the first caller outside jaxion (and the
    equinox/jax frames between them), so the warning names the user's line, however deep the check."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_ROOTS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def is_concrete(*values):
    """True when no leaf of ``values`` is a JAX tracer."""
    leaves = jax.tree_util.tree_leaves(values)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def as_numpy(value):
    """Concrete value as a float64 NumPy array."""
    return np.asarray(value, dtype=np.float64)


# ----------------------------------------------------------------------------- traceable problems


def problem(pred, message, value=None):
    """A problem: boolean array ``pred`` (any entry ``True`` is a failure), its ``message`` and,
    for the eager error only, the offending ``value``."""
    return pred, message, value


def _numerics(value):
    """NumPy for concrete values (no JAX dispatch in eager checks), ``jax.numpy`` for traced ones."""
    return np if is_concrete(value) else jnp


def positive(name, value, allow_zero=False, allow_inf=False):
    """Problem: an entry of ``value`` is NaN, not positive (or negative if ``allow_zero``), or
    infinite unless ``allow_inf``."""
    xp = _numerics(value)
    value = xp.asarray(value)
    bad = ~(value >= 0) if allow_zero else ~(value > 0)
    if not allow_inf:
        bad = bad | xp.isinf(value)
    allowed = "non-negative" if allow_zero else "positive"
    return problem(bad, f"{name} must be {allowed}{'' if allow_inf else ' and finite'} (not NaN)", value)


def finite(name, value):
    """Problem: an entry of ``value`` is NaN or infinite."""
    xp = _numerics(value)
    value = xp.asarray(value)
    return problem(~xp.isfinite(value), f"{name} must be finite (no NaN or inf)", value)


def _flags(problems):
    """``(P,)`` booleans: does problem ``p`` fail anywhere."""
    preds = [pred for pred, _, _ in problems]
    xp = _numerics(preds)
    return xp.stack([xp.any(xp.asarray(pred)) for pred in preds])


def _thread(x, flags, messages):
    """``x`` with a run-time error on the first failing flag."""
    return eqx.branched_error_if(x, jnp.any(flags), jnp.argmax(flags), messages)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _guard(x, flags, messages):
    return _thread(x, flags, messages)


@_guard.defjvp
def _guard_jvp(messages, primals, tangents):
    x, flags = primals
    tx, _ = tangents
    one = _thread(jnp.ones(()), flags, messages)

    def scaled(t):
        return t * one.astype(t.dtype) if jnp.issubdtype(t.dtype, jnp.inexact) else t

    return _thread(x, flags, messages), jax.tree_util.tree_map(scaled, tx)


def enforce(x, problems):
    """Return ``x`` (a pytree of arrays, or ``None`` for an eager-only check) after checking ``problems``.

    Concrete predicates: ``ValueError`` with the first failing message (and its value). Traced
    ones: ``x`` comes back through ``equinox.error_if``, so using the returned value makes the
    compiled program raise the same message at run time. Traced predicates with ``x=None`` cannot
    be checked and pass.
    """
    problems = [p for p in problems if p is not None]
    if not problems:
        return x
    with jax.ensure_compile_time_eval():
        flags = _flags(problems)
    if is_concrete(flags):
        bad = np.asarray(flags)
        if np.any(bad):
            _, message, value = problems[int(np.argmax(bad))]
            shown = "" if value is None or not is_concrete(value) else f", got {np.asarray(value)}"
            raise ValueError(message + shown)
        return x
    if x is None:
        return x
    dynamic, static = eqx.partition(x, eqx.is_array)
    checked = _guard(dynamic, flags, tuple(message for _, message, _ in problems))
    return eqx.combine(checked, static)


def problems_of(*modules):
    """The ``problems()`` of each module, evaluated at once where its fields are concrete (even
    inside a trace, so a closed-over valid model costs nothing at run time)."""
    with jax.ensure_compile_time_eval():
        return [item for module in modules for item in module.problems()]


def checked(module, *extra):
    """``module`` with its own ``problems()`` and the ``extra`` problems enforced (:func:`enforce`)."""
    return enforce(module, problems_of(module) + list(extra))


# ----------------------------------------------------------------------------- concrete options


def require_finite(name, value):
    """Raise ``ValueError`` if a concrete ``value`` has NaN or infinite entries."""
    if is_concrete(value):
        enforce(None, [finite(name, value)])


def require_positive(name, value, allow_zero=False, allow_inf=False):
    """Raise ``ValueError`` unless every entry of a concrete ``value`` is positive (or zero /
    infinite if allowed); NaN always fails."""
    if is_concrete(value):
        enforce(None, [positive(name, value, allow_zero, allow_inf)])


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
