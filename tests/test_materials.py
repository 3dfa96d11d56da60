"""The cited materials table and the drag ranking built on it."""

import csv
from importlib import resources

import jax.numpy as jnp
import numpy as np

import jaxion  # noqa: F401  (enables float64)
from jaxion.elastic import ElasticContinuum
from jaxion.materials import load_materials, material_info
from jaxion.screening import drag_measure, friction_tensor, rank_by_drag

# An anisotropic potential well (eV/Å^2), as felt by an ion between framework sites.
CURVATURE = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]])


def test_every_row_is_cited_and_loads():
    rows = list(csv.DictReader(resources.files("jaxion").joinpath("data/materials.csv").read_text().splitlines()))
    materials, info = load_materials(), material_info()
    assert len(rows) == len(materials) == len(info) >= 6
    for row in rows:
        assert len(row["reference"]) > 20, row["name"]
        assert row["kind"] in ("measured", "computed"), row["name"]
        assert 1.0 < float(row["density_g_cm3"]) < 10.0, row["name"]
    for name, solid in materials.items():
        assert isinstance(solid, ElasticContinuum)
        # ElasticContinuum already enforces the Born criterion; check it again independently.
        assert np.linalg.eigvalsh(np.asarray(solid.voigt))[0] > 0, name
        assert info[name].reference


def test_known_sound_speed():
    # Si along [100]: v_L = sqrt(c11 / rho) = 8.43 km/s (McSkimin, J. Appl. Phys. 24, 988 (1953)
    # reports 8.43 km/s); 0.5 % allows for the table's rounding of c11 and density.
    speeds = load_materials()["Si"].sound_speeds(jnp.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(speeds[-1], 8433.0, rtol=5e-3)


def test_ranking_matches_direct_computation():
    materials = load_materials()
    ranking = rank_by_drag(materials, CURVATURE)
    direct = {name: float(drag_measure(solid, CURVATURE)) for name, solid in materials.items()}
    assert [entry.name for entry in ranking] == sorted(direct, key=direct.get)
    for entry in ranking:
        # vmapped and direct evaluations of the same sums: rounding only.
        np.testing.assert_allclose(entry.drag, direct[entry.name], rtol=1e-12)
        assert entry.most_sensitive in ("c11", "c12", "c44")


def test_sensitivities():
    """Log sensitivities: sum rules from L ~ rho^(1/2) C^(-3/2), and a central finite difference
    in c44 for one material (relative step 1e-4: truncation ~1e-8; tolerance 1e-6)."""
    materials = load_materials()
    ranking = {entry.name: entry for entry in rank_by_drag(materials, CURVATURE)}
    for entry in ranking.values():
        s = entry.sensitivities
        np.testing.assert_allclose(s["density"], 0.5, rtol=1e-10)
        np.testing.assert_allclose(s["c11"] + s["c12"] + s["c44"], -1.5, rtol=1e-10)
    solid = materials["Cu"]
    voigt = np.asarray(solid.voigt)
    c11, c12, c44 = voigt[0, 0], voigt[0, 1], voigt[3, 3]

    def drag(c):
        return float(drag_measure(ElasticContinuum(solid.density, c11=c11, c12=c12, c44=c), CURVATURE))

    h = 1e-4 * c44
    fd = (np.log(drag(c44 + h)) - np.log(drag(c44 - h))) / (np.log(c44 + h) - np.log(c44 - h))
    np.testing.assert_allclose(ranking["Cu"].sensitivities["c44"], fd, rtol=1e-6)


def test_friction_tensor_of_isotropic_solid():
    """For an isotropic solid L = l0 * identity, so Gamma = l0 H_U^2; l0 from the closed form
    (1/v_L^3 + 2/v_T^3) / (12 pi rho), converted by hand: eV/Å^2 -> N/m, kg/s -> amu/ps."""
    rho, bulk, shear = 5000.0, 100.0, 60.0
    v_l, v_t = np.sqrt((bulk + 4 * shear / 3) * 1e9 / rho), np.sqrt(shear * 1e9 / rho)
    l0 = (1 / v_l**3 + 2 / v_t**3) / (12 * np.pi * rho)
    h_si = CURVATURE * 1.602176634e-19 / 1e-20
    expected = l0 * h_si @ h_si / (1.66053906892e-27 / 1e-12)
    gamma = friction_tensor(ElasticContinuum.isotropic(rho, bulk, shear), CURVATURE)
    np.testing.assert_allclose(gamma, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
