"""The cited materials table and the drag ranking built on it."""

import csv
from importlib import resources

import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (enables float64)
from jaxion.elastic import ElasticContinuum
from jaxion.materials import load_materials, material_info, voigt_from_constants
from jaxion.screening import drag_measure, friction_tensor, rank_by_drag

# An anisotropic potential well (eV/Å^2), as felt by an ion between framework sites.
CURVATURE = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]])


def _rows():
    return list(csv.DictReader(resources.files("jaxion").joinpath("data/materials.csv").read_text().splitlines()))


def test_every_row_is_cited_and_loads():
    rows = _rows()
    materials, info = load_materials(), material_info()
    assert len(rows) == len(materials) == len(info) >= 8
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


def _tabulated_constants(row):
    """The row's independent constants, parsed here from the CSV text, with the tetragonal (4/mmm)
    equalities C22 = C11, C23 = C13, C55 = C44 written out by hand."""
    constants = {key: float(value) for key, value in (item.split("=") for item in row["cij_gpa"].split())}
    if row["symmetry"] == "tetragonal":
        constants.update(c22=constants["c11"], c23=constants["c13"], c55=constants["c44"])
    return constants


def _tensor_rows():
    rows = [row for row in _rows() if row["symmetry"] in ("tetragonal", "orthorhombic")]
    assert {row["name"] for row in rows} >= {"LGPS", "gamma-Li3PS4"}
    return rows


def test_tensor_rows_reproduce_the_tabulated_vrh_moduli():
    """Voigt-Reuss-Hill bulk and shear moduli of the loaded tensor, from the textbook formulas (Hill
    1952) written out here, against the values the source tabulates next to its constants. A wrong or
    misplaced digit in a transcribed constant would show. Tolerance 0.12 GPa: the source rounds moduli
    to 0.1 GPa (+-0.05) and constants to 0.1 GPa, whose +-0.05 propagates to at most 0.06 GPa in the
    VRH moduli of these rows (sum of |dK/dC|, |dG/dC| times 0.05)."""
    materials = load_materials()
    for row in _tensor_rows():
        c = np.asarray(materials[row["name"]].voigt)
        s = np.linalg.inv(c)
        normal, off, shear = np.trace(c[:3, :3]), c[0, 1] + c[0, 2] + c[1, 2], np.trace(c[3:, 3:])
        s_normal, s_off, s_shear = np.trace(s[:3, :3]), s[0, 1] + s[0, 2] + s[1, 2], np.trace(s[3:, 3:])
        bulk = 0.5 * ((normal + 2 * off) / 9 + 1 / (s_normal + 2 * s_off))
        reuss_shear = 15 / (4 * s_normal - 4 * s_off + 3 * s_shear)
        shear_modulus = 0.5 * ((normal - off + 3 * shear) / 15 + reuss_shear)
        np.testing.assert_allclose(bulk, float(row["bulk_gpa"]), atol=0.12, err_msg=row["name"])
        np.testing.assert_allclose(shear_modulus, float(row["shear_gpa"]), atol=0.12, err_msg=row["name"])


def test_tensor_rows_axial_sound_speeds():
    """Along a crystal axis of an orthorhombic or tetragonal crystal the Christoffel matrix is
    diagonal: along x the speeds are sqrt(C11/rho), sqrt(C66/rho), sqrt(C55/rho), and so on. Constants
    parsed from the CSV text, not from the loader; eigensolver rounding only (rtol 1e-12)."""
    materials = load_materials()
    axial = {0: ("c11", "c66", "c55"), 1: ("c22", "c66", "c44"), 2: ("c33", "c55", "c44")}
    for row in _tensor_rows():
        constants, rho = _tabulated_constants(row), float(row["density_g_cm3"]) * 1e3
        for axis, keys in axial.items():
            direction = np.eye(3)[axis]
            expected = np.sort([np.sqrt(constants[key] * 1e9 / rho) for key in keys])
            speeds = materials[row["name"]].sound_speeds(jnp.asarray(direction))
            np.testing.assert_allclose(speeds, expected, rtol=1e-12, err_msg=f"{row['name']} axis {axis}")


def test_isotropic_rows_sound_speeds():
    """Isotropic rows (K, G): in every direction v_L = sqrt((K + 4G/3)/rho) and a doubly degenerate
    v_T = sqrt(G/rho). Eigensolver rounding only (rtol 1e-12)."""
    rows = [row for row in _rows() if row["symmetry"] == "isotropic"]
    assert rows
    directions = np.random.default_rng(0).normal(size=(5, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    materials = load_materials()
    for row in rows:
        bulk, shear, rho = (float(row[key]) for key in ("bulk_gpa", "shear_gpa", "density_g_cm3"))
        v_l, v_t = np.sqrt((bulk + 4 * shear / 3) * 1e9 / (rho * 1e3)), np.sqrt(shear * 1e9 / (rho * 1e3))
        speeds = materials[row["name"]].sound_speeds(jnp.asarray(directions))
        np.testing.assert_allclose(speeds, np.tile([v_t, v_t, v_l], (5, 1)), rtol=1e-12, err_msg=row["name"])


def test_lgps_density_from_its_cell():
    """The LGPS density is derived in the table's note: 2 Li10GeP2S12 in a = 8.69407 A, c = 12.5994 A,
    with IUPAC standard atomic weights; recomputed here. The table keeps 4 digits (rtol 3e-4)."""
    molar_mass = 10 * 6.94 + 72.630 + 2 * 30.973762 + 12 * 32.06  # g/mol
    volume = 8.69407**2 * 12.5994 * 1e-24  # cm^3
    density = 2 * molar_mass / (6.02214076e23 * volume)
    row = next(row for row in _rows() if row["name"] == "LGPS")
    np.testing.assert_allclose(float(row["density_g_cm3"]), density, rtol=3e-4)


def test_voigt_from_constants_rejects_bad_input():
    with pytest.raises(ValueError, match="symmetry must be one of"):
        voigt_from_constants("hexagonal", {"c11": 1.0})
    with pytest.raises(ValueError, match="needs exactly the constants"):
        voigt_from_constants("tetragonal", {"c11": 44.9, "c33": 51.2})
