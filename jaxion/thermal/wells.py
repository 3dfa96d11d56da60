"""Analytic stand-ins for checking the time-local integrators: a well and a friction source whose
Boltzmann averages and friction tensors are known in closed form or by one-dimensional quadrature."""

import equinox as eqx
import jax
import jax.numpy as jnp


class Cage(eqx.Module):
    """A cheap stand-in for :class:`~jaxion.thermal.model.IonInFramework` as a friction source:
    the Hessian is that of the anharmonic, anisotropic energy ``R^T K R / 2 + q |R|^4 / 4``, so
    ``Gamma(R) = H(R) L H(R)`` depends on ``R`` (and is constant for ``q = 0``).

    Attributes:
        ion_mass: ``M``; loss_tensor: ``L (3, 3)``; curvature: ``K (3, 3)``; quartic: ``q``.
    """

    ion_mass: jax.Array
    loss_tensor: jax.Array
    curvature: jax.Array
    quartic: jax.Array

    def rigid_energy(self, position):
        return 0.5 * position @ self.curvature @ position + 0.25 * self.quartic * (position @ position) ** 2

    def hessian(self, position):
        return jax.hessian(self.rigid_energy)(position)


class Well(eqx.Module):
    """Landscape ``U = k |R|^2 / 2 + b |R|^4 / 4`` (meV)."""

    stiffness: jax.Array
    quartic: jax.Array

    def energy(self, position):
        r2 = position @ position
        return 0.5 * self.stiffness * r2 + 0.25 * self.quartic * r2**2
