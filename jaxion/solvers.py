"""Symplectic fixed-step diffrax solvers for separable second-order systems ``q'' = a(t, q)``.

The state is the pair ``y = (q, p)`` with ``p = q'``, and the terms follow diffrax's convention
for partitioned systems (as :class:`diffrax.SemiImplicitEuler`): ``terms = (drift, kick)`` where
``drift.vf(t, p, args)`` is ``dq/dt`` (normally ``p`` itself) and ``kick.vf(t, q, args)`` is the
acceleration ``a(t, q)``. A step of size ``h`` is the symmetric composition

    p += b_1 h a(q);  q += a_1 h p;  p += b_2 h a(q);  ...;  q += a_m h p;  p += b_{m+1} h a(q)

(kick-drift-...-drift-kick). The last kick and the first kick of the next step use the same
acceleration (first same as last), so a step costs ``m`` force evaluations.

* :func:`VelocityVerlet`: ``m = 1``, order 2 (Stoermer-Verlet / leapfrog).
* :func:`BlanesMoan`: ``m = 6``, order 4: the optimised Runge-Kutta-Nystroem splitting
  ``SRKN_6^b`` of Blanes and Moan, J. Comput. Appl. Math. 142, 313 (2002), with a much smaller
  error constant than Yoshida's (Forest-Ruth) triple jump at equal cost (their paper).

Both preserve the symplectic form: on a harmonic (or any) system the energy error oscillates
without secular drift. The stable step for an oscillator of angular frequency ``w`` is
``h w < stability_limit()`` (2 for Verlet).
"""

import functools
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np
from diffrax import AbstractSolver, AbstractTerm, LocalLinearInterpolation, RESULTS


class SymplecticComposition(AbstractSolver):
    """Symmetric kick-drift composition for ``(q, p)`` states; see the module docstring.

    Attributes:
        kicks: static ``m + 1`` kick coefficients ``b_i`` (sum 1).
        drifts: static ``m`` drift coefficients ``a_i`` (sum 1).
        method_order: classical order of the composition.
    """

    kicks: tuple = eqx.field(static=True)
    drifts: tuple = eqx.field(static=True)
    method_order: int = eqx.field(static=True)

    term_structure: ClassVar = (AbstractTerm, AbstractTerm)
    interpolation_cls: ClassVar[Callable[..., LocalLinearInterpolation]] = LocalLinearInterpolation

    def __check_init__(self):
        if len(self.kicks) != len(self.drifts) + 1:
            raise ValueError(f"need one more kick than drifts, got {len(self.kicks)} and {len(self.drifts)}")
        if not (np.isclose(sum(self.kicks), 1.0) and np.isclose(sum(self.drifts), 1.0)):
            raise ValueError("kick and drift coefficients must each sum to 1 (consistency)")

    def order(self, terms):
        return self.method_order

    def init(self, terms, t0, t1, y0, args):
        """Solver state: the acceleration at ``(t0, q0)`` (reused by the first kick)."""
        return _acceleration(terms, t0, y0[0], args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        """One composition step from ``t0`` to ``t1``; returns diffrax's step tuple."""
        drift, kick = terms
        q, p = y0
        h = jnp.asarray(t1 - t0)
        # After a jump the stored acceleration is stale. ``unvmap_any`` keeps the predicate
        # unbatched, so under ``vmap`` this stays a real branch rather than computing both.
        acceleration = jax.lax.cond(
            eqxi.unvmap_any(made_jump),
            lambda: _acceleration(terms, t0, q, args),
            lambda: solver_state,
        )
        p = _axpy(self.kicks[0] * h, acceleration, p)

        def stage(carry, coefficients):
            # drift a_i h, then kick b_{i+1} h with the acceleration at the new positions;
            # a scan (not a Python loop) so the force is traced and compiled once.
            q, p, t, _ = carry
            drift_fraction, kick_fraction = coefficients
            q = _axpy(drift_fraction * h, drift.vf(t, p, args), q)
            t = t + drift_fraction * h
            acceleration = kick.vf(t, q, args)
            return (q, _axpy(kick_fraction * h, acceleration, p), t, acceleration), None

        coefficients = (jnp.asarray(self.drifts, h.dtype), jnp.asarray(self.kicks[1:], h.dtype))
        (q, p, _, acceleration), _ = jax.lax.scan(stage, (q, p, t0, acceleration), coefficients)
        y1 = (q, p)
        return y1, None, dict(y0=y0, y1=y1), acceleration, RESULTS.successful

    def func(self, terms, t0, y0, args):
        drift, kick = terms
        return drift.vf(t0, y0[1], args), kick.vf(t0, y0[0], args)

    def stability_limit(self):
        """Largest ``h w`` for which the step is stable on ``q'' = -w^2 q`` (a float)."""
        return _stability_limit(self.kicks, self.drifts)

    @property
    def evaluations_per_step(self):
        """Force evaluations per step (first same as last)."""
        return len(self.drifts)


def _acceleration(terms, t, q, args):
    return terms[1].vf(t, q, args)


def _axpy(alpha, x, y):
    """``y + alpha x`` leaf by leaf, keeping each leaf's dtype (float32 states stay float32)."""
    return jax.tree.map(lambda xi, yi: (yi + jnp.asarray(alpha, yi.dtype) * xi).astype(yi.dtype), x, y)


@functools.cache
def _stability_limit(kicks, drifts):
    """First ``theta = h w`` where the one-step matrix of ``q'' = -q`` has ``|trace| >= 2``."""
    theta = np.linspace(1e-3, 4.0 * len(drifts), 40000)
    matrix = np.broadcast_to(np.eye(2), theta.shape + (2, 2))
    for i, b in enumerate(kicks):
        kick = np.zeros_like(matrix)
        kick[..., 0, 0] = kick[..., 1, 1] = 1.0
        kick[..., 1, 0] = -b * theta
        matrix = kick @ matrix
        if i < len(drifts):
            drift = np.zeros_like(matrix)
            drift[..., 0, 0] = drift[..., 1, 1] = 1.0
            drift[..., 0, 1] = drifts[i] * theta
            matrix = drift @ matrix
    unstable = np.abs(np.trace(matrix, axis1=-2, axis2=-1)) >= 2.0
    return float(theta[np.argmax(unstable)]) if np.any(unstable) else float(theta[-1])


def VelocityVerlet():
    """Stoermer-Verlet (kick-drift-kick), order 2, one force evaluation per step; stable for ``h w < 2``."""
    return SymplecticComposition(kicks=(0.5, 0.5), drifts=(1.0,), method_order=2)


def BlanesMoan():
    """Blanes-Moan ``SRKN_6^b``: order 4, six force evaluations per step, stable for ``h w < 3.16``
    (see :meth:`SymplecticComposition.stability_limit`)."""
    b1, b2, b3 = 0.0829844064174052, 0.396309801498368, -0.0390563049223486
    a1, a2 = 0.245298957184271, 0.604872665711080
    a3 = 0.5 - (a1 + a2)
    b4 = 1.0 - 2.0 * (b1 + b2 + b3)
    return SymplecticComposition(
        kicks=(b1, b2, b3, b4, b3, b2, b1), drifts=(a1, a2, a3, a3, a2, a1), method_order=4
    )
