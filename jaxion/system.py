"""The framework-plus-ion system: lattice, pair potential, interacting sites, ion mass."""

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx

from . import _checks
from .lattice import Lattice
from .potentials import AbstractPairPotential


class System(eqx.Module):
    """A mobile ion interacting with a set of framework sites.

    The interaction (physics.md section 1) is ``Phi(rho, sigma) = sum_j phi(x_j + rho_j - sigma)``
    over the interacting sites ``j``, with ``x_j`` their equilibrium positions.

    Attributes:
        lattice: the framework.
        potential: the ion-site pair potential.
        sites: static tuple of ``S`` integer cells (each of length ``lattice.dim``).
        mass: ``(3,)`` ion mass per axis ``mu`` in units of ``m``; ``inf`` pins an axis.
    """

    lattice: Lattice
    potential: AbstractPairPotential
    sites: tuple = eqx.field(static=True)
    mass: jax.Array

    def __init__(self, lattice, potential, sites=None, mass=(jnp.inf, jnp.inf, 1.0)):
        if not isinstance(lattice, Lattice):
            raise ValueError(f"lattice must be a jaxion Lattice (e.g. jx.SimpleCubic()), got {type(lattice).__name__}")
        if not isinstance(potential, AbstractPairPotential):
            raise ValueError(f"potential must be a pair potential (e.g. jx.Gaussian), got {type(potential).__name__}")
        if sites is None:
            sites = [(0,) * lattice.dim]
        try:
            cells = np.asarray(sites, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"sites must be a list of {lattice.dim}-integer cells, got {sites}") from None
        if cells.ndim != 2 or cells.shape[1] != lattice.dim or cells.shape[0] == 0:
            raise ValueError(
                f"sites must be a non-empty list of {lattice.dim}-integer cells for this lattice, got shape {cells.shape}"
            )
        if not np.all(cells == np.round(cells)):
            raise ValueError(f"sites must be integer cell indices, got {sites}")
        if len({tuple(c) for c in cells.astype(int)}) != len(cells):
            raise ValueError(f"sites must be distinct, got {sites}")
        self.lattice = lattice
        self.potential = potential
        self.sites = tuple(tuple(int(c) for c in cell) for cell in cells)
        mass = jnp.asarray(mass, dtype=float)
        if mass.shape not in ((), (3,)):
            raise ValueError(f"ion mass must be a scalar or one value per axis (3,), got shape {mass.shape}")
        self.mass = jnp.broadcast_to(mass, (3,))

    def __check_init__(self):
        if _checks.is_concrete(self.mass):
            _checks.enforce(None, self._mass_problems())

    def _mass_problems(self):
        """Problems of the ion mass: non-positive or NaN on an axis, or infinite on every axis."""
        with jax.ensure_compile_time_eval():
            return [
                _checks.positive("ion mass", self.mass, allow_inf=True),
                _checks.problem(jnp.all(jnp.isinf(self.mass)),
                                "the ion mass is infinite on every axis: at least one axis must be mobile"),
            ]

    def problems(self):
        """What makes the system invalid (traceable): its lattice's and potential's problems and a
        non-positive, NaN or everywhere-infinite ion mass."""
        return self.lattice.problems() + self.potential.problems() + self._mass_problems()

    def path_problem(self, start):
        """Problem: the straight path along z at transverse ``start (2,)`` runs through an interacting
        site where the pair potential is infinite (e.g. Yukawa at ``r = 0``): no finite speed passes
        it, time steps would skip over it and the perturbative transforms diverge."""
        with jax.ensure_compile_time_eval():
            system = jax.lax.stop_gradient(self)
            offsets = system.site_positions()[:, :2] - jax.lax.stop_gradient(start)
            singular = ~jnp.isfinite(system.potential(jnp.zeros(3)))
            hit = jnp.any(jnp.all(offsets == 0.0, axis=-1)) & singular
        return _checks.problem(
            hit,
            "the straight path at this start runs through the interacting site(s), where the pair potential is "
            "infinite; start the pass with a transverse offset",
            start,
        )

    @property
    def site_cells(self):
        """``(S, dim)`` integer cells of the interacting sites."""
        return np.array(self.sites, dtype=int)

    def site_positions(self):
        """``(S, 3)`` equilibrium positions of the interacting sites."""
        return self.lattice.positions(self.site_cells)

    @property
    def inverse_mass(self):
        """``(3,)`` ``1/mu`` per axis, zero on pinned axes."""
        return jnp.where(jnp.isinf(self.mass), 0.0, 1.0 / jnp.where(jnp.isinf(self.mass), 1.0, self.mass))

    def interaction(self, rho_sites, sigma):
        """``Phi(rho_S, sigma)`` for site displacements ``(S, 3)`` and ion position ``(3,)``."""
        return jnp.sum(self.potential(self.site_positions() + rho_sites - sigma))

    def force_on_ion(self, rho_sites, sigma):
        """``-grad_sigma Phi``, ``(3,)``."""
        return -jax.grad(self.interaction, argnums=1)(rho_sites, sigma)

    def force_on_sites(self, rho_sites, sigma):
        """``-grad_rho Phi`` per site, ``(S, 3)``; sums to minus the force on the ion."""
        return -jax.grad(self.interaction, argnums=0)(rho_sites, sigma)

    def static_potential(self, sigma):
        """``Phi(0, sigma)``: the landscape of the undisplaced framework at ion positions ``(..., 3)``."""
        rest = jnp.zeros((len(self.sites), 3))
        flat = jnp.reshape(sigma, (-1, 3))
        return jax.vmap(lambda s: self.interaction(rest, s))(flat).reshape(jnp.shape(sigma)[:-1])

    def hessian(self, sigma):
        """``H(sigma)``: Hessian of ``Phi(0, sigma)`` with respect to the ion position, ``(3, 3)``."""
        return jax.hessian(lambda s: self.static_potential(s[None])[0])(jnp.asarray(sigma, dtype=float))

    def total_energy(self, rho_sites, sigma, sigma_dot):
        """Ion kinetic energy ``sum mu sigma'^2 / 8 pi^2`` (mobile axes) plus ``Phi``; the
        framework's own energy is added by each method."""
        return self.ion_kinetic_energy(sigma_dot) + self.interaction(rho_sites, sigma)

    def ion_kinetic_energy(self, sigma_dot):
        """``sum_i mu_i sigma_i'^2 / (8 pi^2)`` over mobile axes, for velocities ``(..., 3)``."""
        finite_mass = jnp.where(jnp.isinf(self.mass), 0.0, self.mass)
        return jnp.sum(finite_mass * sigma_dot**2, axis=-1) / (8.0 * jnp.pi**2)
