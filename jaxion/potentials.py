"""Pair potentials between the ion and a framework mass.

A pair potential is a function of the separation vector ``r = x_j + rho_j - sigma`` (site minus
ion), in units of ``l``, returning an energy in units of ``hbar Omega``. Every potential has a
``range``: the length over which it acts, used to place the start and end of single passes.
"""

import abc
from typing import Callable

import jax
import jax.numpy as jnp
import equinox as eqx

from . import _checks


class AbstractPairPotential(eqx.Module):
    """Interface: ``potential(r)`` maps separations ``(..., 3)`` to energies ``(...)``."""

    @abc.abstractmethod
    def __call__(self, separation):
        """Pair energy for separations ``(..., 3)``; returns ``(...)``."""

    @property
    @abc.abstractmethod
    def range(self):
        """Characteristic length of the interaction (units of ``l``)."""

    def problems(self):
        """What makes the parameters invalid, as traceable :func:`jaxion._checks.problem` triples
        (enforced on construction and again, traced too, by every entry point)."""
        return []

    def __check_init__(self):
        if _checks.is_concrete(self):
            _checks.checked(self)

    def __add__(self, other):
        if not isinstance(other, AbstractPairPotential):
            return NotImplemented
        return PairSum((self, other))


def distance(separation):
    """``|r|`` with a gradient that stays finite at ``r = 0``."""
    squared = jnp.sum(separation**2, axis=-1)
    safe = jnp.where(squared > 0, squared, 1.0)
    return jnp.where(squared > 0, jnp.sqrt(safe), 0.0)


class Gaussian(AbstractPairPotential):
    """``phi(r) = phi0 exp(-|r|^2 / (2 width^2))`` (the paper's interaction, Eq. 13)."""

    phi0: jax.Array
    width: jax.Array

    def __init__(self, phi0, width):
        self.phi0 = jnp.asarray(phi0, dtype=float)
        self.width = jnp.asarray(width, dtype=float)

    def __check_init__(self):
        _checks.require_shape("Gaussian phi0", self.phi0, ())
        _checks.require_shape("Gaussian width", self.width, ())

    def problems(self):
        return [_checks.finite("Gaussian phi0", self.phi0), _checks.positive("Gaussian width", self.width)]

    def __call__(self, separation):
        return self.phi0 * jnp.exp(-jnp.sum(separation**2, axis=-1) / (2.0 * self.width**2))

    @property
    def range(self):
        return self.width


class Yukawa(AbstractPairPotential):
    """Screened Coulomb ``phi(r) = u0 exp(-|r| / screening) / |r|`` (infinite at ``r = 0``)."""

    u0: jax.Array
    screening: jax.Array

    def __init__(self, u0, screening):
        self.u0 = jnp.asarray(u0, dtype=float)
        self.screening = jnp.asarray(screening, dtype=float)

    def __check_init__(self):
        _checks.require_shape("Yukawa u0", self.u0, ())
        _checks.require_shape("Yukawa screening length", self.screening, ())

    def problems(self):
        return [_checks.finite("Yukawa u0", self.u0), _checks.positive("Yukawa screening length", self.screening)]

    def __call__(self, separation):
        r = distance(separation)
        return self.u0 * jnp.exp(-r / self.screening) / r

    @property
    def range(self):
        return self.screening


class PairSum(AbstractPairPotential):
    """Sum of pair potentials: ``phi = sum_i phi_i``; its range is the largest of theirs."""

    terms: tuple

    def __check_init__(self):
        if len(self.terms) == 0 or not all(isinstance(term, AbstractPairPotential) for term in self.terms):
            raise ValueError(f"PairSum needs a non-empty tuple of pair potentials, got {self.terms}")

    def problems(self):
        return [item for term in self.terms for item in term.problems()]

    def __call__(self, separation):
        return sum(term(separation) for term in self.terms)

    @property
    def range(self):
        return jnp.max(jnp.stack([jnp.asarray(term.range) for term in self.terms]))


class PairFunction(AbstractPairPotential):
    """Any smooth user function of one separation ``r (3,)``: ``fn(r)`` or ``fn(r, params)``.

    Attributes:
        fn: the function (static); it is vectorised over leading axes automatically.
        params: a pytree of parameters passed as the second argument (differentiable); with
            ``params=None`` the function is called as ``fn(r)``.
        length: the interaction range in units of ``l``.
    """

    fn: Callable = eqx.field(static=True)
    params: object
    length: jax.Array

    def __init__(self, fn, length, params=None):
        if not callable(fn):
            raise ValueError(f"PairFunction needs a callable fn(r) or fn(r, params), got {type(fn).__name__}")
        self.fn = fn
        self.params = params
        self.length = jnp.asarray(length, dtype=float)

    def __check_init__(self):
        _checks.require_shape("PairFunction length", self.length, ())

    def problems(self):
        return [_checks.positive("PairFunction length", self.length)]

    def __call__(self, separation):
        single = (lambda r: self.fn(r)) if self.params is None else (lambda r: self.fn(r, self.params))
        separation = jnp.asarray(separation)
        flat = separation.reshape(-1, 3)
        return jax.vmap(single)(flat).reshape(separation.shape[:-1])

    @property
    def range(self):
        return self.length
