# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Fig. 5: four and eight interacting masses
#
# The ion crosses the centre of a cube face, (alpha/2, alpha/2, z), interacting with the four
# masses of that face or the eight masses of the cell; Phi0 = 0.0025, otherwise as Fig. 4.
# Eq. 23 with the Hessian summed over the sites (neglecting the phase between neighbouring
# masses, which long waves do not see) predicts the low-speed loss. With `--quick`: the face
# only, one width, 3 speeds, L = 10.

# %%
import argparse
from pathlib import Path

from jaxion import experiments, plotting

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--size", type=int, default=50, help="lattice side L")
parser.add_argument("--speeds", type=int, default=16, help="simulated speeds per curve, log-spaced from 1 to 80 (the paper: 50)")
args, _ = parser.parse_known_args()
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUT = HERE / "results" / "fig5_multi_site" / ("quick" if args.quick else "")  # quick runs never overwrite full-size results

# %%
speeds = None if args.quick else experiments.paper_speeds(1.0, 80.0, args.speeds)
data = experiments.fig5(size=args.size, speeds=speeds, quick=args.quick, out=OUT)

# %%
plotting.save(plotting.fig5(data), OUT / "fig5.png")
experiments.write_agreement(data, ("eq13", "eq23"), OUT)
