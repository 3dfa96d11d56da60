"""Material parameters -> drag: ranking real solids by the friction they exert on an ion.

For an ion whose potential well has curvature ``H_U`` (the Hessian of its interaction energy,
eV/Å^2), a framework described as an elastic continuum exerts the friction tensor of Eq. 27,

    Gamma = H_U L H_U,        L = integral dOmega sqrt(rho) Gamma_C(n)^(-3/2) / (16 pi^2),

reported in amu/ps (so ``Gamma / M_ion`` is a damping rate in 1/ps). The scalar drag used for
ranking is the orientation average ``tr(Gamma) / 3``: smooth in every parameter (unlike the
largest eigenvalue, which has kinks where eigenvalues cross, e.g. for isotropic solids) and
equal to the friction coefficient along any axis when ``Gamma`` is isotropic.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .response import recoil_matrix
from .elastic import ElasticContinuum
from .units import KG_PER_S_PER_AMU_PER_PS, NEWTON_PER_METRE_PER_EV_PER_A2

# Voigt entries that a cubic crystal's c11, c12 and c44 occupy.
_CUBIC_CLASSES = {
    "c11": np.diag([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]),
    "c12": np.pad(np.ones((3, 3)) - np.eye(3), ((0, 3), (0, 3))),
    "c44": np.diag([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
}


class DragRanking(NamedTuple):
    """One material's entry in :func:`rank_by_drag`.

    Attributes:
        name: the material's key.
        drag: ``tr(Gamma) / 3`` in amu/ps.
        sensitivities: logarithmic sensitivities ``d ln drag / d ln x`` for ``x`` in
            ``density``, ``c11``, ``c12``, ``c44`` (a class of Voigt entries scaled together,
            e.g. ``c11`` scales C11, C22 and C33). For every material the elastic ones sum to
            -3/2 and the density one is +1/2 (``L ~ rho^(1/2) C^(-3/2)``).
        most_sensitive: the elastic constant with the largest ``|d ln drag / d ln c|``.
    """

    name: str
    drag: float
    sensitivities: dict
    most_sensitive: str


def friction_tensor(continuum, curvature, n_theta=24, n_phi=48):
    """Friction tensor ``Gamma = H_U L H_U`` (Eq. 27) in amu/ps.

    Args:
        continuum: an :class:`~jaxion.elastic.ElasticContinuum`.
        curvature: ``(3, 3)`` Hessian ``H_U`` of the ion's potential, eV/Å^2.
        n_theta, n_phi: sphere quadrature orders for ``L``.

    Returns:
        ``(3, 3)``.
    """
    _checks.require_shape("curvature", curvature, (3, 3))
    hessian = jnp.asarray(curvature, dtype=float) * NEWTON_PER_METRE_PER_EV_PER_A2
    recoil = recoil_matrix(continuum, n_theta=n_theta, n_phi=n_phi)
    return hessian @ recoil @ hessian / KG_PER_S_PER_AMU_PER_PS


def drag_measure(continuum, curvature, n_theta=24, n_phi=48):
    """Scalar drag ``tr(Gamma) / 3`` in amu/ps (see :func:`friction_tensor`)."""
    return jnp.trace(friction_tensor(continuum, curvature, n_theta, n_phi)) / 3.0


def rank_by_drag(materials, curvature, n_theta=24, n_phi=48):
    """Rank materials from least to most drag on an ion of potential curvature ``curvature``.

    The drag and its gradient in density and elastic constants are computed for the whole
    batch at once (``jax.vmap`` of ``jax.value_and_grad``).

    Args:
        materials: ``{name: ElasticContinuum}``, e.g. :func:`jaxion.materials.load_materials`.
        curvature: ``(3, 3)`` potential Hessian ``H_U`` in eV/Å^2.
        n_theta, n_phi: sphere quadrature orders.

    Returns:
        list of :class:`DragRanking`, ascending in drag.
    """
    names = list(materials)
    densities = jnp.stack([materials[name].density for name in names])
    voigts = jnp.stack([materials[name].voigt for name in names])

    def drag(density, voigt):
        return drag_measure(ElasticContinuum(density, voigt=voigt), curvature, n_theta, n_phi)

    values, (d_density, d_voigt) = jax.vmap(jax.value_and_grad(drag, argnums=(0, 1)))(densities, voigts)
    log_sensitivities = {"density": d_density * densities / values}
    for constant, mask in _CUBIC_CLASSES.items():
        log_sensitivities[constant] = jnp.sum(d_voigt * voigts * mask, axis=(-2, -1)) / values

    ranking = []
    for i in np.argsort(np.asarray(values)):
        sensitivities = {key: float(value[i]) for key, value in log_sensitivities.items()}
        elastic = {key: abs(sensitivities[key]) for key in _CUBIC_CLASSES}
        ranking.append(DragRanking(names[i], float(values[i]), sensitivities, max(elastic, key=elastic.get)))
    return ranking
