"""An ion in a framework in physical units: the system every thermal description runs.

Units (the follow-up paper's, physics.md 5.6): lengths in Å, times in ps, energies in meV,
masses in meV ps^2 / Å^2 (``1 = 9.6485 amu``; :func:`from_amu` converts), springs in meV/Å^2,
temperatures in kelvin. The framework is a :class:`jaxion.lattice.Lattice` built in these
units (springs meV/Å^2, spacing Å, ``mass`` the framework mass), so ``lattice.modes`` gives
angular frequencies in rad/ps and ``lattice.green_function`` the static response in Å^2/meV.

The rigid interaction of an ion at ``R`` with displaced sites ``x_n + u_n`` is

    U(R, u) = sum_n s(|r_n|) phi(r_n),   r_n = x_n + u_n - R,

over the neighbour stencil of :mod:`jaxion.thermal.neighbours` (``s`` the smooth cut-off). Its
Hessian in ``R`` at ``u = 0`` is ``H(R)``, and the friction tensor of the time-local
descriptions is ``Gamma(R) = H(R) L H(R)`` with the loss tensor (physics.md Eq. 27)

    L = sum_u integral dOmega_n eta_u eta_u^T / (16 pi^2 rho v_u(n)^3) = 2 pi * recoil_matrix(lattice)

(``rho v_u^3 = m S(n)^(3/2)`` with ``v_u = a sqrt(eig S(n))`` for the spring lattice, whose
``recoil_density`` is ``S^(-3/2) / (32 pi^3 m)``), in ps^3 / (meV ps^2 / Å^2) = ps Å^2 / meV,
so that ``Gamma`` is in (meV ps^2 / Å^2) / ps.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..response import recoil_matrix
from ..lattice import Lattice, SimpleCubic
from ..potentials import AbstractPairPotential, Yukawa, distance
from ..units import BOLTZMANN_MEV, MEV
from .neighbours import NeighbourSites


def from_amu(mass):
    """Mass in amu -> meV ps^2 / Å^2."""
    return jnp.asarray(mass, dtype=float) / MEV


def to_amu(mass):
    """Mass in meV ps^2 / Å^2 -> amu."""
    return jnp.asarray(mass, dtype=float) * MEV


def thermal_energy(temperature):
    """``k_B T`` in meV for a temperature in kelvin."""
    return BOLTZMANN_MEV * jnp.asarray(temperature, dtype=float)


def maxwell_velocity(key, temperature, mass):
    """A Maxwell-Boltzmann velocity ``N(0, k_B T / M)`` per axis, ``(3,)`` Å/ps, for a temperature in
    kelvin and a mass in meV ps^2/Å^2 (the thermal descriptions' and protocols' one draw)."""
    return jnp.sqrt(BOLTZMANN_MEV * temperature / mass) * jax.random.normal(key, (3,), dtype=float)


class IonInFramework(eqx.Module):
    """A mobile ion (isotropic mass ``M``) in a 3D Bravais framework, physical units.

    Attributes:
        lattice: the framework (springs meV/Å^2, spacing Å, mass meV ps^2/Å^2).
        potential: ion-site pair potential ``phi(r)``, meV for separations ``r (..., 3)`` in Å.
        ion_mass: ``M`` in meV ps^2/Å^2.
        neighbours: the :class:`NeighbourSites` the ion interacts with.
        loss_tensor: ``L (3, 3)`` of Eq. 27 in ps Å^2 / meV.
    """

    lattice: Lattice
    potential: AbstractPairPotential
    ion_mass: jax.Array
    neighbours: NeighbourSites
    loss_tensor: jax.Array

    def __init__(self, lattice, potential, ion_mass, *, cutoff=6.0, switch_width=1.5, size=None, neighbours=None):
        """``cutoff``/``switch_width`` (Å) and ``size`` (periodic box, cells per axis, or ``None``)
        build the default neighbour stencil; pass ``neighbours`` to choose another (e.g.
        ``NeighbourSites.cell_corners``)."""
        if not isinstance(lattice, Lattice) or lattice.dim != 3:
            raise ValueError(f"lattice must be a 3D jaxion Lattice (e.g. jx.SimpleCubic), got {lattice!r}")
        if not isinstance(potential, AbstractPairPotential):
            raise ValueError(f"potential must be a pair potential (e.g. jx.Yukawa), got {type(potential).__name__}")
        self.lattice = lattice
        self.potential = potential
        self.ion_mass = jnp.asarray(ion_mass, dtype=float)
        if neighbours is None:
            neighbours = NeighbourSites(_checks.as_numpy(lattice.spacing), cutoff, switch_width, size)
        self.neighbours = neighbours
        self.loss_tensor = 2.0 * jnp.pi * recoil_matrix(lattice)

    def __check_init__(self):
        _checks.require_positive("ion mass (meV ps^2/Å^2)", self.ion_mass)
        _checks.require_shape("ion mass", self.ion_mass, ())
        if _checks.is_concrete(self.lattice.spacing) and not np.isclose(
            float(self.lattice.spacing), self.neighbours.spacing
        ):
            raise ValueError(
                f"the neighbour stencil's spacing {self.neighbours.spacing} Å differs from the lattice's "
                f"{float(self.lattice.spacing)} Å"
            )

    @property
    def size(self):
        """Periodic box ``L`` (cells per axis) or ``None`` (infinite lattice)."""
        return self.neighbours.size

    def site_cells(self, position):
        """Unwrapped cells ``(C, 3)`` of the sites an ion at ``position (3,)`` interacts with."""
        return self.neighbours.cells(position)

    def interaction(self, position, site_displacements=None):
        """``U(R, u)`` in meV: ion at ``position (3,)`` Å, sites displaced by ``(C, 3)`` Å (aligned
        with :meth:`site_cells`; ``None`` for the framework at rest)."""
        separations = self.lattice.spacing * self.site_cells(position) - position
        if site_displacements is not None:
            separations = separations + site_displacements
        return jnp.sum(self.neighbours.weights(distance(separations)) * self.potential(separations))

    def rigid_energy(self, position):
        """``U(R, 0)``, the landscape of the framework held at rest, meV."""
        return self.interaction(position)

    def rigid_force(self, position):
        """``-grad U(R, 0)`` in meV/Å, ``(3,)``."""
        return -jax.grad(self.rigid_energy)(position)

    def hessian(self, position):
        """``H(R)``: Hessian of ``U(R, 0)`` summed over sites, meV/Å^2, ``(3, 3)``."""
        return jax.hessian(self.rigid_energy)(position)

    def friction(self, position):
        """``Gamma(R) = H L H``, ``(3, 3)``, in (meV ps^2/Å^2) / ps: the drag force is ``-Gamma V``."""
        hessian = self.hessian(position)
        return hessian @ self.loss_tensor @ hessian


def follow_up_model(u0=4000.0, *, cutoff=6.0, switch_width=1.5, size=None, neighbours=None):
    """The follow-up paper's model system (physics.md 5.6).

    Simple cubic, ``a = 3`` Å, framework mass 3.5 meV ps^2/Å^2 (~34 amu), central springs
    ``k1 = 520`` and ``k2 = 170`` meV/Å^2, no on-site term; ion mass 0.7 meV ps^2/Å^2 (~6.75
    amu, lithium-like); Yukawa ``phi(r) = u0 exp(-r / 0.5 Å) / r`` with ``u0`` in meV Å (the
    paper uses 4000 and 8000). The default neighbour set is every site within ``cutoff`` Å (a
    smooth cut-off over the last ``switch_width`` Å); ``NeighbourSites.cell_corners(3.0)`` gives
    the paper's 8 atoms of the current cell.
    """
    lattice = SimpleCubic(k1=520.0, k2=170.0, spacing=3.0, mass=3.5)
    return IonInFramework(lattice, Yukawa(u0=u0, screening=0.5), 0.7, cutoff=cutoff, switch_width=switch_width,
                          size=size, neighbours=neighbours)
