"""A small, cited table of real solids as :class:`~jaxion.elastic.ElasticContinuum` frameworks.

The table (``jaxion/data/materials.csv``) has one row per material: density (g/cm^3), the elastic
constants (GPa), whether the values are measured or computed, the reference they come from and a
note on how each number was obtained. Rows are only added with values traceable to a publication.
The ``symmetry`` column says how the elastic constants are given:

* ``isotropic``: bulk and shear moduli ``bulk_gpa``, ``shear_gpa`` (a polycrystal or a
  Voigt-Reuss-Hill average), read as ``c11 = K + 4G/3``, ``c12 = K - 2G/3``, ``c44 = G``;
* ``cubic``: ``c11_gpa``, ``c12_gpa``, ``c44_gpa`` (cube axes along x, y, z);
* ``tetragonal`` (Laue class 4/mmm: C22 = C11, C23 = C13, C55 = C44) and ``orthorhombic``: the
  independent constants in ``cij_gpa`` as ``"c11=44.9 c33=51.2 ..."`` (Voigt indices, crystal
  axes a, b, c along x, y, z). For these rows ``bulk_gpa`` and ``shear_gpa`` hold the source's own
  Voigt-Reuss-Hill moduli, kept to check the transcription; the continuum is built from the tensor.
"""

import csv
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .elastic import ElasticContinuum

_KG_PER_M3_PER_G_PER_CM3 = 1e3

# For each crystal class given by a full tensor: its independent constants and the Voigt entries
# (1-based, upper triangle) that each one fills.
_TENSOR_CLASSES = {
    "tetragonal": {
        "c11": ((1, 1), (2, 2)),
        "c33": ((3, 3),),
        "c12": ((1, 2),),
        "c13": ((1, 3), (2, 3)),
        "c44": ((4, 4), (5, 5)),
        "c66": ((6, 6),),
    },
    "orthorhombic": {
        "c11": ((1, 1),),
        "c22": ((2, 2),),
        "c33": ((3, 3),),
        "c12": ((1, 2),),
        "c13": ((1, 3),),
        "c23": ((2, 3),),
        "c44": ((4, 4),),
        "c55": ((5, 5),),
        "c66": ((6, 6),),
    },
}


class MaterialInfo(NamedTuple):
    """Metadata of one row of the materials table."""

    formula: str
    material_class: str
    kind: str  # "measured" or "computed"
    symmetry: str  # "isotropic", "cubic", "tetragonal" or "orthorhombic" (see the module docstring)
    reference: str
    note: str


COLUMNS = ("name", "formula", "class", "kind", "symmetry", "density_g_cm3", "c11_gpa", "c12_gpa", "c44_gpa",
           "bulk_gpa", "shear_gpa", "cij_gpa", "reference", "note")


class _Table(dict):
    """``{name: value}`` whose missing-key error lists the known names."""

    def __missing__(self, name):
        raise KeyError(f"unknown material {name!r}; the table has {', '.join(sorted(self))}")


def _rows(path=None):
    """``[(where, row)]`` of the table (the packaged one, or the CSV file at ``path``), with
    ``where = "file, line n"``; ``ValueError`` for unknown or missing columns and duplicate names."""
    if path is None:
        source = "jaxion/data/materials.csv"
        text = resources.files("jaxion").joinpath("data/materials.csv").read_text(encoding="utf-8")
    else:
        source, text = str(path), Path(path).read_text(encoding="utf-8")
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    unknown = [column for column in header if column not in COLUMNS]
    missing = [column for column in COLUMNS if column not in header]
    if unknown or missing:
        raise ValueError(f"{source}: unknown columns {unknown} and missing columns {missing}; the columns are "
                         f"{', '.join(COLUMNS)}")
    rows, seen = [], {}
    for row in reader:
        where = f"{source}, line {reader.line_num}"
        if None in row or any(value is None for value in row.values()):
            raise ValueError(f"{where}: expected {len(COLUMNS)} comma-separated fields")
        if row["name"] in seen:
            raise ValueError(f"{where}: duplicate material name {row['name']!r} (first at {seen[row['name']]})")
        seen[row["name"]] = where
        rows.append((where, row))
    return rows


def _number(row, column, where):
    """``float(row[column])``, or ``ValueError`` naming the file, line and column."""
    try:
        return float(row[column])
    except ValueError:
        raise ValueError(
            f"{where}, column {column}: expected a number for {row['name']}, got {row[column]!r}"
        ) from None


def voigt_from_constants(symmetry, constants):
    """The ``(6, 6)`` Voigt matrix (GPa) of a ``"tetragonal"`` or ``"orthorhombic"`` crystal from
    its independent constants, e.g. ``{"c11": 44.9, "c33": 51.2, ...}`` (crystal axes along x, y, z).

    Raises:
        ValueError: unknown symmetry, or constants missing or not belonging to that class.
    """
    if symmetry not in _TENSOR_CLASSES:
        raise ValueError(f"symmetry must be one of {sorted(_TENSOR_CLASSES)}, got {symmetry!r}")
    entries = _TENSOR_CLASSES[symmetry]
    if set(constants) != set(entries):
        raise ValueError(
            f"a {symmetry} crystal needs exactly the constants {sorted(entries)}, got {sorted(constants)}"
        )
    voigt = np.zeros((6, 6))
    for key, positions in entries.items():
        for i, j in positions:
            voigt[i - 1, j - 1] = voigt[j - 1, i - 1] = float(constants[key])
    return voigt


def _tensor_constants(row, where):
    """``{"c11": 44.9, ...}`` from a row's ``cij_gpa`` field ``"c11=44.9 c33=51.2 ..."``."""
    try:
        return {key: float(value) for key, value in (item.split("=") for item in row["cij_gpa"].split())}
    except ValueError:
        raise ValueError(
            f"{where}, column cij_gpa: {row['name']} must read 'c11=... c12=...', got {row['cij_gpa']!r}"
        ) from None


def _continuum(row, where):
    """The row's continuum; ``ValueError`` naming the file, line (and column) of a bad value."""
    density = _number(row, "density_g_cm3", where) * _KG_PER_M3_PER_G_PER_CM3
    try:
        if row["symmetry"] == "cubic":
            c11, c12, c44 = (_number(row, key, where) for key in ("c11_gpa", "c12_gpa", "c44_gpa"))
            return ElasticContinuum(density, c11=c11, c12=c12, c44=c44)
        if row["symmetry"] == "isotropic":
            bulk, shear = _number(row, "bulk_gpa", where), _number(row, "shear_gpa", where)
            return ElasticContinuum.isotropic(density, bulk=bulk, shear=shear)
        if row["symmetry"] in _TENSOR_CLASSES:
            return ElasticContinuum(density, voigt=voigt_from_constants(row["symmetry"], _tensor_constants(row, where)))
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(where) else f"{where} ({row['name']}): {message}") from None
    raise ValueError(f"{where}, column symmetry: unknown symmetry {row['symmetry']!r} for {row['name']}; expected "
                     f"isotropic, cubic or one of {sorted(_TENSOR_CLASSES)}")


def load_materials(path=None):
    """The materials table as ``{name: ElasticContinuum}`` (density in kg/m^3, constants in GPa).

    ``path``: another CSV file with the same columns (default: the packaged table). Raises
    ``ValueError`` naming the file, line and column of a bad value, a duplicate name or an unknown
    column; looking up an unknown name raises a ``KeyError`` that lists the known ones.
    """
    return _Table({row["name"]: _continuum(row, where) for where, row in _rows(path)})


def material_info(path=None):
    """The table's metadata as ``{name: MaterialInfo}`` (formula, class, kind, symmetry, reference, note)."""
    return _Table({
        row["name"]: MaterialInfo(
            row["formula"], row["class"], row["kind"], row["symmetry"], row["reference"], row["note"]
        )
        for _, row in _rows(path)
    })
