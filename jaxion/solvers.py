"""Symplectic and Runge-Kutta-Nystroem diffrax solvers for partitioned systems ``q' = D p``,
``p' = a(t, q)``, using the terms only through diffrax's public term API.

The state is the pair ``y = (q, p)`` and the terms follow diffrax's convention for partitioned
systems (as :class:`diffrax.SemiImplicitEuler`): ``terms = (drift, kick)``, the drift's vector
field a function of ``p`` (normally ``p`` itself) moving ``q``, the kick's a function of ``q``
moving ``p``. A solver reads the step's controls ``dX = drift.contr(t0, t1)`` and
``dK = kick.contr(t0, t1)`` once and forms every increment of ``q`` or ``p`` as
``term.vf_prod(t, z, args, w dX)`` (or ``term.prod(term.vf(t, z, args), w dX)`` for a field it
keeps) with static weights ``w``; it never scales a vector field by ``h`` itself. So any diffrax
term works, e.g. an ODE kick ``ODETerm(a)`` (``dK = h``, increment ``h a(q)``) or a noisy one
``MultiTerm(ODETerm(a), ControlTerm(sigma, brownian_motion))`` (``dK = (h, dW)``, increment
``h a(q) + sigma(q) dW``).

A step of :class:`SymplecticComposition` is the symmetric composition (kick-drift-...-drift-kick)

    p += kick(q; b_1 dK);  q += drift(p; a_1 dX);  p += kick(q; b_2 dK);  ...;
    q += drift(p; a_m dX);  p += kick(q; b_{m+1} dK),

``kick(q; w dK) = kick.vf_prod(t, q, args, w dK)`` (every kick and drift is the exact flow of its
term over its weighted control, as neither changes its own argument). The last kick and the first
kick of the next step use the same vector field (first same as last, kept as the solver state),
so a step costs ``m`` force evaluations.

* :func:`VelocityVerlet`: ``m = 1``, order 2 (Stoermer-Verlet / leapfrog).
* :func:`BlanesMoan`: ``m = 6``, order 4: the optimised Runge-Kutta-Nystroem splitting
  ``SRKN_6^b`` of Blanes and Moan, J. Comput. Appl. Math. 142, 313 (2002), with a much smaller
  error constant than Yoshida's (Forest-Ruth) triple jump at equal cost (their paper).

Both preserve the symplectic form: on a harmonic (or any) system the energy error oscillates
without secular drift. The stable step for an oscillator of angular frequency ``w`` is
``h w < stability_limit()`` (2 for Verlet). With a noisy kick the composition of these exact
sub-flows converges to the Stratonovich solution (which is the Itô one when the noise enters only
``p`` and depends only on ``q``, as thermal noise does).

:class:`RungeKuttaNystrom` runs an explicit Runge-Kutta tableau (Tsit5, Dopri5, Dopri8) on the
same ``(q, p)`` terms in Nystroem form, for a drift linear in ``p``: with the kick's stage
increments ``K_l = kick.prod(kick.vf(t0 + c_l h, Q_l, args), dK)`` (``h A_l`` for an ODE kick) and
the drift's increments ``drift(P) = drift.vf_prod(t0, P, args, dX)`` (``h D P``), the stages need
only the ``K_l``,

    Q_i = q0 + c_i drift(p0) + sum_l (a a)_il drift(K_l),
    q1 = q0 + drift(p0) + sum_l (b a)_l drift(K_l),      p1 = p0 + sum_l kick.prod(A_l, b_l dK),

which is the tableau's own first-order step ``P_j = p0 + sum_l a_jl K_l``,
``Q_i = q0 + sum_j a_ij drift(P_j)`` with the sums exchanged (identical in exact arithmetic; the
tests compare it with diffrax's to rounding), unrolled over static coefficients. Each stage reads
``q0``, ``p0`` and the earlier accelerations ``A_l`` once (the drifts fuse into the sum): on a
100^3 lattice this is ~4x faster than the generic stage loop, whose stage sums run over every
stage of a stacked buffer. The stage's field is formed by ``vf`` and scaled by ``prod`` (rather
than ``vf_prod``) because it feeds several sums: a term may fuse ``vf_prod`` into its one consumer
(:class:`jaxion.full.FullLattice`'s kick does), which here would recompute the force in each.
Measured on the lattice: summing the momenta before one drift, ``drift(c_i p0 + sum_l (a a)_il
K_l)``, is 1.8-3x slower per step at L = 12 and 32; applying the two controls separately
(``dX (dK A_l)``, as general controls need, where scalar ones would allow ``(dX dK) A_l``) costs
5% more multiplications, ~5% per step where the step is compute-bound (L <= 32) and nothing at
L >= 48, where it is bound by memory.

Jumps. The first-same-as-last vector field is stale after a jump (``made_jump``): diffrax passes a
static ``False`` when its step-size controller has no jump times, and the stored field is used
with no branch at all; otherwise :func:`reuse_unless_jump` re-evaluates it under ``lax.cond``,
a real branch unless the predicate is batched (``vmap`` over runs whose jump flags differ), where
JAX evaluates both sides, one extra force evaluation per step but the same result.

Stability. :meth:`SymplecticComposition.stability_limit` bounds ``h w`` for an oscillator;
:func:`runge_kutta_stability_limit` bounds ``2 pi omega h`` on the imaginary axis for the explicit
Runge-Kutta tableaux by name (:data:`TABLEAUX`).
"""

import abc
import functools
import operator
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from diffrax import AbstractLocalInterpolation, AbstractSolver, AbstractStratonovichSolver, AbstractTerm, RESULTS

# diffrax's explicit Runge-Kutta methods by name and their orders (run in Nystroem form by RungeKuttaNystrom)
TABLEAUX = {"tsit5": (diffrax.Tsit5, 5), "dopri5": (diffrax.Dopri5, 5), "dopri8": (diffrax.Dopri8, 8)}
# |R(iy)| of an explicit Runge-Kutta method exceeds 1 (the mode grows) beyond this growth per step;
# below it the method is stable to rounding on the imaginary axis.
_RK_GROWTH = 1e-10


class _EndpointInterpolation(AbstractLocalInterpolation):
    """Dense output on ``[t0, t1]`` as fixed weights of end values, ``y(t0 + s h) = sum_k w_k(s)
    v_k`` (:meth:`_at`), evaluated only when asked; an interval is the difference of its ends."""

    t0: jax.Array
    t1: jax.Array
    y0: object
    y1: object

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return jax.tree.map(jnp.subtract, self.evaluate(t1), self.evaluate(t0))
        h = self.t1 - self.t0
        return self._at((t0 - self.t0) / jnp.where(h == 0, 1.0, h))

    @abc.abstractmethod
    def _at(self, s):
        """The interpolant at the fraction ``s`` of the step."""


def _weighted(weights, *trees):
    """``sum_k weights[k] * trees[k]`` leaf by leaf, in each leaf's dtype."""

    def leaf(*values):
        return functools.reduce(operator.add, [jnp.asarray(w, values[0].dtype) * v for w, v in zip(weights, values)])

    return jax.tree.map(leaf, *trees)


class Linear(_EndpointInterpolation):
    """Linear interpolant ``y(t0 + s h) = (1 - s) y0 + s y1``, written with both weights so no part
    of it is independent of the evaluation time: diffrax's ``LocalLinearInterpolation`` forms
    ``y1 - y0``, which XLA hoists out of the save loop and then computes every step (two passes
    over a 100^3 lattice's state, ~8% of a symplectic step)."""

    def _at(self, s):
        return _weighted((1 - s, s), self.y0, self.y1)


class SymplecticComposition(AbstractStratonovichSolver):
    """Symmetric kick-drift composition for ``(q, p)`` states; see the module docstring.

    Attributes:
        kicks: static ``m + 1`` kick weights ``b_i`` (sum 1).
        drifts: static ``m`` drift weights ``a_i`` (sum 1).
        method_order: classical order of the composition.
    """

    kicks: tuple = eqx.field(static=True)
    drifts: tuple = eqx.field(static=True)
    method_order: int = eqx.field(static=True)

    term_structure: ClassVar = (AbstractTerm, AbstractTerm)
    interpolation_cls: ClassVar[Callable[..., AbstractLocalInterpolation]] = Linear

    def __check_init__(self):
        if len(self.kicks) != len(self.drifts) + 1:
            raise ValueError(f"need one more kick than drifts, got {len(self.kicks)} and {len(self.drifts)}")
        if not (np.isclose(sum(self.kicks), 1.0) and np.isclose(sum(self.drifts), 1.0)):
            raise ValueError("kick and drift coefficients must each sum to 1 (consistency)")

    def order(self, terms):
        return self.method_order

    def init(self, terms, t0, t1, y0, args):
        """Solver state: the kick's vector field ``kick.vf(t0, q0, args)`` (the first kick's)."""
        return terms[1].vf(t0, y0[0], args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        """One composition step from ``t0`` to ``t1``; returns diffrax's step tuple (the solver
        state is the kick's vector field at the step's end)."""
        drift, kick = terms
        q, p = y0
        h = jnp.asarray(t1 - t0)  # advances the times the vector fields are evaluated at
        moves, pushes = drift.contr(t0, t1), kick.contr(t0, t1)
        field = reuse_unless_jump(made_jump, solver_state, lambda: kick.vf(t0, q, args))
        p = _add(p, kick.prod(field, _scaled(self.kicks[0], pushes)))

        def drift_to(q, p, t, weight):
            return _add(q, drift.vf_prod(t, p, args, _scaled(weight, moves))), t + weight * h

        def stage(carry, weights):
            # drift a_i dX, then kick b_{i+1} dK at the new positions; a scan (not a Python loop)
            # so the force is traced and compiled once
            q, p, t = carry
            drift_weight, kick_weight = weights
            q, t = drift_to(q, p, t, drift_weight)
            return (q, _add(p, kick.vf_prod(t, q, args, _scaled(kick_weight, pushes))), t), None

        t = t0
        if len(self.drifts) > 1:
            inner = (jnp.asarray(self.drifts[:-1], h.dtype), jnp.asarray(self.kicks[1:-1], h.dtype))
            (q, p, t), _ = jax.lax.scan(stage, (q, p, t), inner)
        # the last stage keeps its vector field: the next step's first kick (first same as last)
        q, t = drift_to(q, p, t, self.drifts[-1])
        field = kick.vf(t, q, args)
        y1 = (q, _add(p, kick.prod(field, _scaled(self.kicks[-1], pushes))))
        return y1, None, dict(y0=y0, y1=y1), field, RESULTS.successful

    def func(self, terms, t0, y0, args):
        return _field(terms, t0, y0, args)

    def stability_limit(self):
        """Largest ``h w`` for which the step is stable on ``q'' = -w^2 q`` (a float)."""
        return _stability_limit(self.kicks, self.drifts)

    @property
    def evaluations_per_step(self):
        """Force evaluations per step (first same as last)."""
        return len(self.drifts)


def _field(terms, t, y, args):
    """``(drift.vf(t, p), kick.vf(t, q))`` of the partitioned terms at ``y = (q, p)``."""
    drift, kick = terms
    return drift.vf(t, y[1], args), kick.vf(t, y[0], args)


class Rate(AbstractTerm):
    """A plain rate term ``dz = f(t, y) dt``: the control is the time increment and ``prod`` the
    product ``dt f``, as for diffrax's ``ODETerm``, but ``f``'s output need not have the shape of its
    input ``y`` (``ODETerm`` broadcasts to it): a drift may map velocities to another layout of the
    positions (the full lattice's wrapped displacements), a kick the reverse. ``rate(t, y, args)``
    is a module, so repeated solves reuse their compilation."""

    rate: eqx.Module

    def vf(self, t, y, args):
        return self.rate(t, y, args)

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        """``control * vf`` in the field's dtype (the control cast first: float32 stays float32)."""
        return jax.tree.map(lambda v: jnp.asarray(control, v.dtype) * v, vf)


def reuse_unless_jump(made_jump, stored, recompute):
    """A solver's stored first-same-as-last value, or ``recompute()`` where a jump made it stale
    (diffrax's ``made_jump``; module docstring): resolved at trace time when diffrax passes a static
    ``bool``, else a ``lax.cond``, which JAX turns into computing both and selecting when
    ``made_jump`` is batched under ``vmap``."""
    if isinstance(made_jump, bool):
        return recompute() if made_jump else stored
    return jax.lax.cond(made_jump, recompute, lambda: stored)


def _scaled(weight, control):
    """``weight * control`` leaf by leaf, the weight cast to each leaf's dtype first (a scalar
    ``h`` for an ODE term, a tuple such as ``(h, dW)`` for a ``MultiTerm``)."""
    return jax.tree.map(lambda c: jnp.asarray(weight, jnp.result_type(c)) * c, control)


def _add(y, increment):
    """``y + increment`` leaf by leaf, keeping each leaf's dtype (float32 states stay float32)."""
    return jax.tree.map(lambda yi, di: (yi + di).astype(yi.dtype), y, increment)


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


class CubicHermite(_EndpointInterpolation):
    """Cubic Hermite interpolant on ``[t0, t1]`` from the end values ``y0``, ``y1`` and the
    increments ``k0 = h y'(t0)``, ``k1 = h y'(t1)`` (each a vector field times the step's control),
    evaluated only when asked (no per-step work):

        y(t0 + s h) = (1 - s)^2 (1 + 2 s) y0 + s^2 (3 - 2 s) y1 + s (1 - s) [(1 - s) k0 - s k1].
    """

    k0: object
    k1: object

    def _at(self, s):
        weights = ((1 - s) ** 2 * (1 + 2 * s), s**2 * (3 - 2 * s), s * (1 - s) ** 2, -(s**2) * (1 - s))
        return _weighted(weights, self.y0, self.y1, self.k0, self.k1)


class RungeKuttaNystrom(AbstractSolver):
    """An explicit Runge-Kutta tableau on ``(q, p)`` states in Nystroem form (module docstring).

    ``terms = (drift, kick)`` as for :class:`SymplecticComposition`; the drift's increment
    ``drift.vf_prod(t, P, args, dX)`` must be linear in ``P`` and independent of ``t`` (``h P``
    for the lattice's ``q' = p``). Fixed or adaptive steps: the embedded error estimate is the
    tableau's, ``sum_j e_j`` times the stage increments, in the same form. Dense output is the
    cubic Hermite interpolant of ``q`` and ``p`` (:class:`CubicHermite`). The kick's vector field
    at the end of a step is the next step's first stage, so a step costs ``stages - 1`` force
    evaluations for first-same-as-last tableaux (Tsit5: 6) and ``stages`` otherwise.

    Args:
        tableau: a diffrax ``ButcherTableau``, e.g. ``diffrax.Tsit5.tableau`` (kept as static
            tuples ``a`` (full lower triangle), ``b`` and error weights ``e``).
        method_order: the tableau's order.
    """

    a: tuple = eqx.field(static=True)
    b: tuple = eqx.field(static=True)
    e: tuple = eqx.field(static=True)
    method_order: int = eqx.field(static=True)

    term_structure: ClassVar = (AbstractTerm, AbstractTerm)
    interpolation_cls: ClassVar[Callable[..., AbstractLocalInterpolation]] = CubicHermite

    def __init__(self, tableau, method_order):
        stages = len(tableau.b_sol)
        a = np.zeros((stages, stages))
        for i, row in enumerate(tableau.a_lower):
            a[i + 1, : len(row)] = row
        if not np.allclose(a.sum(axis=1)[1:], tableau.c):
            raise ValueError("the tableau's c must be the row sums of a")
        self.a = tuple(map(tuple, a.tolist()))
        self.b = tuple(np.asarray(tableau.b_sol, dtype=float).tolist())
        self.e = tuple(np.asarray(tableau.b_error, dtype=float).tolist())
        self.method_order = int(method_order)

    def order(self, terms):
        return self.method_order

    def init(self, terms, t0, t1, y0, args):
        """Solver state: the kick's vector field ``kick.vf(t0, q0, args)`` (the first stage's)."""
        return terms[1].vf(t0, y0[0], args)

    def coefficients(self):
        """Static NumPy ``(c, a a, b, b a, e, e a)`` (``a`` the full lower triangle, ``e`` the
        error weights); the final stage of a first-same-as-last tableau is dropped from ``c`` and
        ``a a`` (it is the step's end)."""
        a, b, e = np.array(self.a), np.array(self.b), np.array(self.e)
        inner = len(b) - 1 if np.array_equal(a[-1], b) else len(b)
        return a.sum(axis=1)[:inner], (a @ a)[:inner], b, b @ a, e, e @ a

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        """One step from ``t0`` to ``t1``; returns diffrax's step tuple (the solver state is the
        kick's vector field at the step's end)."""
        drift, kick = terms
        q0, p0 = y0
        h = jnp.asarray(t1 - t0)
        moves, pushes = drift.contr(t0, t1), kick.contr(t0, t1)
        c, aa, b, ba, e, ea = self.coefficients()
        fields = [reuse_unless_jump(made_jump, solver_state, lambda: kick.vf(t0, q0, args))]  # A_l
        moved = drift.vf_prod(t0, p0, args, moves)  # drift(p0)
        driven = [drift.vf_prod(t0, kick.prod(fields[0], pushes), args, moves)]  # drift(K_l)

        def drifted(weight, weights):
            """``weight drift(p0) + sum_l weights_l drift(K_l)``."""
            return _combine([(weight, moved)] + list(zip(weights, driven)))

        def kicked(weights, fields):
            """``sum_l weights_l K_l``, each term ``kick.prod(A_l, weights_l dK)``."""
            return _sum([kick.prod(field, _scaled(w, pushes)) for w, field in zip(weights, fields) if w != 0.0])

        for i in range(1, len(c)):
            fields.append(kick.vf(t0 + c[i] * h, _add(q0, drifted(c[i], aa[i])), args))
            driven.append(drift.vf_prod(t0, kick.prod(fields[-1], pushes), args, moves))
        stages = len(c)
        q1, p1 = _add(q0, drifted(1.0, ba)), _add(p0, kicked(b, fields))
        last = kick.vf(t1, q1, args)
        # the last stage of a first-same-as-last tableau is (t1, q1), whose field is `last`
        error = (drifted(float(np.sum(e)), ea), kicked(e, fields + [last]))
        y1 = (q1, p1)
        dense = dict(y0=y0, y1=y1, k0=(moved, kick.prod(fields[0], pushes)),
                     k1=(drift.vf_prod(t1, p1, args, moves), kick.prod(last, pushes)))
        return y1, error, dense, last, RESULTS.successful

    def func(self, terms, t0, y0, args):
        return _field(terms, t0, y0, args)


def _combine(terms):
    """``sum_k weight_k x_k`` leaf by leaf for ``terms`` of ``(weight, x)``, in the dtype of ``x``.
    Terms with a zero static weight are dropped, so the whole sum is one fused pass over the rest."""
    terms = [(weight, x) for weight, x in terms if weight != 0.0]
    return _weighted([weight for weight, _ in terms], *[x for _, x in terms])


def _sum(trees):
    """``trees[0] + trees[1] + ...`` leaf by leaf (one fused pass)."""
    return jax.tree.map(lambda *leaves: functools.reduce(operator.add, leaves), *trees)


def runge_kutta_stability_limit(name):
    """Largest ``y`` with ``|R(iy')| <= 1 + 1e-10`` for all ``0 < y' <= y``, where ``R`` is the
    stability polynomial of the explicit Runge-Kutta method ``name`` (a key of ``TABLEAUX``, from its
    Butcher tableau): Tsit5 0.48, Dopri5 1.0, Dopri8 0.58. Beyond it a lattice mode with
    ``2 pi omega dt > y`` is amplified every step."""
    tableau = TABLEAUX[name][0].tableau
    stages = len(tableau.a_lower) + 1
    a = np.zeros((stages, stages))
    for i, row in enumerate(tableau.a_lower):
        a[i + 1, : len(row)] = row
    y = np.linspace(0.01, 6.0, 6000)
    # R(iy) = 1 + iy b^T (1 - iy A)^-1 1, one batched solve over the grid (~3 ms: no cache needed)
    stage_values = np.linalg.solve(np.eye(stages) - 1j * y[:, None, None] * a, np.ones((y.size, stages, 1)))[..., 0]
    amplification = np.abs(1 + 1j * y * (stage_values @ np.asarray(tableau.b_sol)))
    unstable = amplification > 1.0 + _RK_GROWTH
    return float(y[np.argmax(unstable) - 1]) if np.any(unstable) else float(y[-1])
