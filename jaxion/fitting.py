"""Recover the parameters behind observations: least squares through jaxion, optimised by optax.

The user supplies

* ``build(params) -> system``: a pytree of parameters (e.g. ``{"k1": 15.0, "k2": 5.0}``) to the
  object the observation is computed from (a :class:`~jaxion.System`, a lattice, a continuum, ...);
* ``model(system) -> prediction``: the observation, e.g.
  ``lambda s: jx.loss_perturbative(s, speeds, start)`` or the positions of a time-local trajectory;
* ``target``: the observed values, same shape as the prediction.

:func:`fit` minimises the mean squared residual

    f(params) = mean_i r_i^2 / 2,   r = log(p / t) ("log"), (p - t) / |t| ("relative") or (p - t) / scale,

over unconstrained variables ``u``: ``params = exp(u)`` for parameters declared ``positive`` (so
a loss curve spanning decades, or springs and widths that must stay positive, are handled by a
well-scaled problem), ``params = u`` otherwise. The optimisation (L-BFGS with a zoom line search,
or Adam) is one ``jax.lax.while_loop`` inside ``jax.jit``: no host round-trip until it returns.
:func:`fit_multistart` runs the same loop for a batch of starts at once (``jax.vmap``) and keeps
the best; :func:`sample_starts` draws such a batch (log-uniformly for positive parameters).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _checks

RESIDUALS = ("log", "relative", "absolute")
OPTIMIZERS = ("lbfgs", "adam")


class FitWarning(UserWarning):
    """A fit stopped without converging (step limit reached, or a non-finite objective)."""


class FitResult(eqx.Module):
    """Outcome of :func:`fit` (or the best start of :func:`fit_multistart`).

    Attributes:
        params: the fitted parameters (natural, not log), same pytree as the initial guess.
        loss: final objective ``mean r^2 / 2``.
        history: ``(max_steps,)`` objective before each iteration; ``nan`` after the last one.
        n_steps: iterations taken.
        converged: ``True`` when the gradient norm fell below ``gtol``, the objective below
            ``atol``, or the objective stopped decreasing (relative change below ``ftol``) before
            ``max_steps``.
        start: index of the chosen start (``fit_multistart``), else 0.
        losses: final objective of every start ``(K,)`` (``fit_multistart``), else ``(1,)``.
    """

    params: Any
    loss: jax.Array
    history: jax.Array
    n_steps: jax.Array
    converged: jax.Array
    start: jax.Array
    losses: jax.Array


def residuals(prediction, target, kind="log", scale=None):
    """Residual vector (flattened) between a prediction and a target of the same shape.

    Args:
        prediction, target: arrays of equal shape.
        kind: ``"log"``: ``log(p / t)`` (both must be positive; for curves spanning decades),
            ``"relative"``: ``(p - t) / |t|``, ``"absolute"``: ``(p - t) / scale``.
        scale: for ``"absolute"``: a positive number or array broadcast with the target
            (default 1).

    Returns:
        ``(N,)``.
    """
    prediction, target = jnp.asarray(prediction, dtype=float), jnp.asarray(target, dtype=float)
    if prediction.shape != target.shape:
        raise ValueError(f"model output has shape {prediction.shape} but the target has shape {target.shape}")
    if kind == "log":
        _checks.require_positive("target (log residuals need positive observations)", target)
        return (jnp.log(prediction) - jnp.log(target)).reshape(-1)
    if kind == "relative":
        _checks.require_positive("|target| (relative residuals)", jnp.abs(target))
        return ((prediction - target) / jnp.abs(target)).reshape(-1)
    if kind == "absolute":
        scale = 1.0 if scale is None else jnp.asarray(scale, dtype=float)
        _checks.require_positive("residual scale", scale)
        return ((prediction - target) / scale).reshape(-1)
    raise ValueError(f"residual must be one of {RESIDUALS}, got {kind!r}")


def _positive_mask(init, positive):
    """Pytree of Python bools (structure of ``init``): which leaves are log-parametrised.

    ``positive``: ``None``/``False`` (none), ``True`` (all), a collection of top-level keys of a
    dict ``init``, or a pytree of bools with the structure of ``init``.
    """
    if positive is None or isinstance(positive, bool):
        return jax.tree_util.tree_map(lambda _: bool(positive), init)
    if isinstance(init, dict) and isinstance(positive, (list, tuple, set, frozenset)):
        unknown = set(positive) - set(init)
        if unknown:
            raise ValueError(f"positive names {sorted(unknown)} that are not parameters; parameters are {sorted(init)}")
        return {key: jax.tree_util.tree_map(lambda _, k=key: k in positive, value) for key, value in init.items()}
    try:
        return jax.tree_util.tree_map(bool, jax.tree_util.tree_map(lambda _, p: p, init, positive))
    except ValueError:
        raise ValueError(
            "positive must be None, a bool, a list of parameter names (dict parameters) or a pytree of bools "
            "with the structure of the initial parameters"
        ) from None


def _to_unconstrained(params, mask):
    """``log`` of the positive leaves (``ValueError`` on a concrete non-positive one)."""

    def leaf(value, positive):
        value = jnp.asarray(value, dtype=float)
        if positive:
            _checks.require_positive(
                "initial value of a positive (log-parametrised) parameter (pass positive=False, or the names "
                "of the positive ones, to fit signed parameters)", value)
            return jnp.log(value)
        return value

    return jax.tree_util.tree_map(leaf, params, mask)


def _to_natural(unconstrained, mask):
    return jax.tree_util.tree_map(lambda u, positive: jnp.exp(u) if positive else u, unconstrained, mask)


def objective(build, model, target, positive=None, residual="log", scale=None, init=None):
    """The fitted objective as a function of the unconstrained variables.

    Returns ``(f, to_unconstrained, to_natural)`` with ``f(u) = mean r(model(build(params(u))))^2 / 2``
    (see the module docstring); ``init`` fixes the pytree structure for ``positive``.
    """
    if residual not in RESIDUALS and not callable(residual):
        raise ValueError(f"residual must be one of {RESIDUALS} or a callable (prediction, target) -> array, got {residual!r}")
    mask = _positive_mask(init, positive)
    target = jnp.asarray(target, dtype=float)

    def f(u):
        prediction = model(build(_to_natural(u, mask)))
        r = residual(prediction, target) if callable(residual) else residuals(prediction, target, residual, scale)
        return 0.5 * jnp.mean(jnp.square(r))

    return f, (lambda p: _to_unconstrained(p, mask)), (lambda u: _to_natural(u, mask))


def _optimizer(name, learning_rate, max_step):
    """optax transformation; every step is at most ``max_step`` long in the unconstrained variables
    (for L-BFGS the search direction is clipped and the line search may not lengthen it), so a
    fit never jumps to absurd parameters (e.g. a spring scaled by e^50) where models break down."""
    if name == "lbfgs":
        scaling = optax.scale(-1.0) if learning_rate is None else optax.scale_by_learning_rate(learning_rate)
        search = optax.scale_by_zoom_linesearch(max_linesearch_steps=20, max_learning_rate=1.0)
        return optax.chain(optax.scale_by_lbfgs(), optax.clip_by_global_norm(max_step), scaling, search)
    if name == "adam":
        return optax.chain(optax.adam(1e-2 if learning_rate is None else learning_rate),
                           optax.clip_by_global_norm(max_step))
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def _check_options(optimizer, max_steps, gtol, ftol, atol, max_step):
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    for name, value in (("gtol", gtol), ("ftol", ftol), ("atol", atol)):
        _checks.require_positive(name, value, allow_zero=True)
    _checks.require_positive("max_step", max_step)


def _runner(build, model, target, init, positive, residual, scale, optimizer, learning_rate, max_steps, gtol, ftol, atol,
            max_step):
    """``run(u0) -> (u, loss, history, n_steps, converged)`` plus the parameter maps."""
    _check_options(optimizer, max_steps, gtol, ftol, atol, max_step)
    f, to_u, to_p = objective(build, model, target, positive, residual, scale, init)
    transform = _optimizer(optimizer, learning_rate, max_step)
    value_and_grad = optax.value_and_grad_from_state(f) if optimizer == "lbfgs" else jax.value_and_grad(f)

    def run(u0):
        def cond(carry):
            return (carry[0] < max_steps) & ~carry[-1]

        def body(carry):
            k, u, state, history, previous, _, _ = carry
            if optimizer == "lbfgs":
                value, grad = value_and_grad(u, state=state)
                updates, state = transform.update(grad, state, u, value=value, grad=grad, value_fn=f)
            else:
                value, grad = value_and_grad(u)
                updates, state = transform.update(grad, state, u)
            history = history.at[k].set(value)
            finite = jnp.isfinite(value)
            stalled = (k > 0) & (jnp.abs(previous - value) <= ftol * jnp.abs(value))
            converged = finite & ((optax.tree.norm(grad) <= gtol) | (value <= atol) | stalled)
            done = converged | ~finite
            stepped = optax.apply_updates(u, updates)
            u = jax.tree_util.tree_map(lambda old, new: jnp.where(done, old, new), u, stepped)
            return k + 1, u, state, history, value, converged, done

        carry = (0, u0, transform.init(u0), jnp.full((max_steps,), jnp.nan), jnp.asarray(jnp.inf),
                 jnp.asarray(False), jnp.asarray(False))
        k, u, _, history, _, converged, _ = jax.lax.while_loop(cond, body, carry)
        return u, f(u), history, k, converged

    return run, to_u, to_p


def _report(result, what="the fit"):
    """Warn (:class:`FitWarning`) when a concrete result did not converge; returns ``result``."""
    if not _checks.is_concrete(result.converged) or bool(result.converged):
        return result
    max_steps = np.shape(result.history)[-1]
    reason = (f"it reached max_steps={max_steps} without meeting gtol, ftol or atol" if int(result.n_steps) >= max_steps
              else "the objective became non-finite (nan or inf: the model failed at the parameters tried)")
    _checks.warn(f"{what} did not converge: {reason}; objective {float(result.loss):.3g} at the last finite step. "
                 "Check result.converged, and try other starts, more steps or looser tolerances", FitWarning)
    return result


def fit(build, model, target, init, *, positive=True, residual="log", scale=None, optimizer="lbfgs",
        learning_rate=None, max_steps=200, gtol=1e-10, ftol=1e-12, atol=0.0, max_step=1.0):
    """Least-squares fit of parameters to observations (module docstring).

    Example (recover springs from an Eq.-13 loss curve)::

        build = lambda p: jx.System(jx.SimpleCubic(k1=p["k1"], k2=p["k2"]), jx.Gaussian(0.01, 1.0))
        model = lambda s: jx.loss_perturbative(s, speeds, (0.5, 0.0))
        result = fit(build, model, observed, {"k1": 10.0, "k2": 2.0}, positive=True)

    Args:
        build: ``params -> system`` (any pytree of parameters; every leaf is fitted).
        model: ``system -> prediction`` (array of the target's shape); must be traceable.
        target: observed values.
        init: initial parameters (pytree of floats).
        positive: parameters fitted in log space (``params = exp(u)``), which keeps them in
            their physical domain (springs, widths, masses): ``True`` (all; the default), a list
            of names (dict parameters), a pytree of bools, or ``False`` for signed parameters.
        residual: ``"log"``, ``"relative"``, ``"absolute"`` (with ``scale``) or a callable
            ``(prediction, target) -> residuals``.
        scale: scale of the absolute residuals (number or array broadcast with the target).
        optimizer: ``"lbfgs"`` (optax L-BFGS with a zoom line search; default) or ``"adam"``.
        learning_rate: Adam's step (default 1e-2), or L-BFGS's initial step scale before its line
            search (default 1).
        max_steps: iteration limit.
        gtol, ftol, atol: stop when the gradient norm (in the unconstrained variables) is at most
            ``gtol``, the objective changed by at most ``ftol`` relative between iterations, or
            the objective is at most ``atol``.

    Returns:
        :class:`FitResult`; warns (:class:`FitWarning`) when ``converged`` is ``False``. A model that
        raises for invalid parameters (an unstable framework, say) stops the fit with that error;
        one that returns ``nan`` stops it with ``converged = False``.
    """
    run, to_u, to_p = _runner(build, model, target, init, positive, residual, scale, optimizer, learning_rate,
                              max_steps, gtol, ftol, atol, max_step)
    u, loss, history, k, converged = jax.jit(run)(to_u(init))
    return _report(FitResult(to_p(u), loss, history, k, converged, jnp.asarray(0), loss[None]))


def fit_multistart(build, model, target, starts, *, positive=True, residual="log", scale=None, optimizer="lbfgs",
                   learning_rate=None, max_steps=200, gtol=1e-10, ftol=1e-12, atol=0.0, max_step=1.0,
                   vectorize=False):
    """:func:`fit` from several starts; returns the start with the lowest final objective.

    Args:
        starts: the initial parameters stacked along a leading axis of size ``K`` on every leaf
            (e.g. from :func:`sample_starts`).
        vectorize: run the ``K`` fits as one ``jax.vmap``-ed loop (it runs until every start has
            stopped, and under ``vmap`` the line search's branches all execute: worth it for cheap
            models on parallel hardware); default ``False`` runs them one after another with one
            compiled loop.
        other arguments: as :func:`fit`.

    Returns:
        :class:`FitResult` of the best start, with ``start`` its index and ``losses`` all finals;
        warns (:class:`FitWarning`) when that start did not converge.
    """
    leaves = jax.tree_util.tree_leaves(starts)
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError("starts must have the same leading (start) axis on every leaf")
    first = jax.tree_util.tree_map(lambda x: x[0], starts)
    run, to_u, to_p = _runner(build, model, target, first, positive, residual, scale, optimizer, learning_rate,
                              max_steps, gtol, ftol, atol, max_step)
    n_starts = sizes.pop()
    u0 = _stack([to_u(_take(starts, i)) for i in range(n_starts)])
    if vectorize:
        u, losses, histories, steps, converged = jax.jit(jax.vmap(run))(u0)
    else:
        compiled = jax.jit(run)
        u, losses, histories, steps, converged = _stack([compiled(_take(u0, i)) for i in range(n_starts)])
    best = jnp.argmin(jnp.where(jnp.isfinite(losses), losses, jnp.inf))
    return _report(FitResult(to_p(_take(u, best)), losses[best], histories[best], steps[best],
                             converged[best], best, losses), "the best start's fit")


def _take(tree, i):
    """Entry ``i`` of the leading axis of every leaf."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def _stack(trees):
    """Stack a list of equal pytrees along a new leading axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def sample_starts(key, bounds, n, log=True):
    """``n`` random starts within ``bounds = {name: (low, high)}``.

    Args:
        key: a ``jax.random`` key.
        bounds: per parameter ``(low, high)``.
        n: number of starts.
        log: sample log-uniformly (needs ``0 < low``) instead of uniformly.

    Returns:
        ``{name: (n,)}``, to pass as ``starts`` to :func:`fit_multistart`.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    keys = jax.random.split(key, len(bounds))
    starts = {}
    for subkey, (name, (low, high)) in zip(keys, sorted(bounds.items())):
        if not low < high:
            raise ValueError(f"bounds for {name!r} must have low < high, got ({low}, {high})")
        if log and low <= 0:
            raise ValueError(f"log-uniform starts need positive bounds, got ({low}, {high}) for {name!r}")
        unit = jax.random.uniform(subkey, (n,), dtype=float)
        starts[name] = jnp.exp(jnp.log(low) + unit * jnp.log(high / low)) if log else low + unit * (high - low)
    return starts
