"""A small, cited table of real solids as :class:`~jaxion.elastic.ElasticContinuum` frameworks.

The table (``jaxion/data/materials.csv``) has one row per material: density (g/cm^3) and either
cubic elastic constants ``c11, c12, c44`` or isotropic bulk and shear moduli (GPa; for a
polycrystal or a Voigt-Reuss-Hill average), whether the values are measured or computed, and
the reference they come from. Rows are only added with a value traceable to a publication.
"""

import csv
from importlib import resources
from typing import NamedTuple

from .elastic import ElasticContinuum

_KG_PER_M3_PER_G_PER_CM3 = 1e3


class MaterialInfo(NamedTuple):
    """Metadata of one row of the materials table."""

    formula: str
    material_class: str
    kind: str  # "measured" or "computed"
    symmetry: str  # "cubic" (c11, c12, c44 given) or "isotropic" (bulk, shear given)
    reference: str
    note: str


def _rows():
    text = resources.files("jaxion").joinpath("data/materials.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _continuum(row):
    density = float(row["density_g_cm3"]) * _KG_PER_M3_PER_G_PER_CM3
    if row["symmetry"] == "cubic":
        c11, c12, c44 = (float(row[key]) for key in ("c11_gpa", "c12_gpa", "c44_gpa"))
        return ElasticContinuum(density, c11=c11, c12=c12, c44=c44)
    if row["symmetry"] == "isotropic":
        return ElasticContinuum.isotropic(density, bulk=float(row["bulk_gpa"]), shear=float(row["shear_gpa"]))
    raise ValueError(f"materials table: unknown symmetry {row['symmetry']!r} for {row['name']}")


def load_materials():
    """The materials table as ``{name: ElasticContinuum}`` (density in kg/m^3, constants in GPa)."""
    return {row["name"]: _continuum(row) for row in _rows()}


def material_info():
    """The table's metadata as ``{name: MaterialInfo}`` (formula, class, kind, symmetry, reference, note)."""
    return {
        row["name"]: MaterialInfo(
            row["formula"], row["class"], row["kind"], row["symmetry"], row["reference"], row["note"]
        )
        for row in _rows()
    }
