"""The ``jaxion`` command.

    jaxion demo [--out DIR] [--quick]
    jaxion figure {2,4,5,6} [--size L] [--quick] [--out DIR]
    jaxion loss [--lattice cubic|chain] [--k1 K] [--k2 K] [--phi0 P] [--width W] [--s S]
                [--speeds 1,2,5 | --speed-range A B N] [--method perturbative|low-speed|closed-form|full]
    jaxion bench [--quick]

Bad arguments end with exit code 2 and a one-line message (argparse's, or ``jaxion: error: ...``
for a ``ValueError`` raised by the library), never a traceback; every argument is checked before
any work starts. A run that fails physically (a non-finite integration) ends with exit code 1 and
one line. SIGINT (Ctrl-C) and SIGTERM stop a run cleanly: the partial results are saved (figures:
``figN.partial.json``, strict JSON) and earlier complete files are left as they were; the exit
code is 130 (SIGINT) or 143 (SIGTERM).
"""

import argparse
import csv
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

DEMO_WIDTHS = (0.5, 1.0, 2.0, 4.0)
# The units of `jaxion loss` (the paper's, physics.md section 1), printed and saved with the numbers.
LOSS_UNITS = dict(speed="l/period", loss="hbar Omega",
                  note="l = sqrt(hbar / m Omega) is the framework oscillator's length, a period 2 pi / Omega; "
                       "jaxion.units converts to angstrom, ps, meV")


def _speed_list(text):
    try:
        speeds = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"speeds must be comma-separated numbers, e.g. 1,2,5; got {text!r}") from None
    if not speeds or min(speeds) <= 0:
        raise argparse.ArgumentTypeError(f"speeds must be positive numbers, got {text!r}")
    return speeds


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def _write_json(path, payload):
    from .experiments import write_json

    return write_json(path, payload)


def _output_dir(text):
    """``--out``: a directory that exists or can be created, and is writable."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"--out must be a directory, but {text!r} is a file")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"--out {text!r} is not writable")
    return text


def _machine():
    import jax

    return dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                python=platform.python_version(), jax=jax.__version__, device=str(jax.devices()[0]))


def demo(args):
    """Fig. 2 chain simulations against Eqs. 13-14, plus the 3D low-speed limit Eq. 13 -> Eq. 23."""
    from . import experiments, plotting

    out = Path(args.out)
    began = time.perf_counter()
    if args.quick:
        chain = experiments.fig2(quick=True, out=out / "demo_parts")
    else:
        chain = experiments.fig2(kappas=(1.0, 0.0), widths=DEMO_WIDTHS, speeds=experiments.paper_speeds(2.0, 80.0, 12),
                                 size=100, batch=12, out=out / "demo_parts")
    low_speed = experiments.low_speed_limit(width=1.0, quick=args.quick)
    seconds = time.perf_counter() - began
    agreement = {theory: experiments.agreement(chain, theory) for theory in ("eq13", "eq14")}
    ratio = low_speed["curves"][0]["ratio"]
    payload = dict(chain=chain, low_speed=low_speed, agreement=agreement,
                   low_speed_ratio_at_slowest=float(ratio[0]), seconds=seconds, machine=_machine())
    json_path = _write_json(out / "demo.json", payload)
    lines = [f"Chain (Fig. 2): {len(chain['curves'])} curves x {len(chain['parameters']['speeds'])} speeds, "
             f"{chain['parameters']['size']} masses, in {seconds:.0f} s"]
    for theory, name in (("eq13", "Eq. 13 (perturbative quadrature)"), ("eq14", "Eq. 14 (closed form)")):
        a = agreement[theory]
        where = ", ".join(f"{k}={v:g}" for k, v in a.get("curve", {}).items())
        lines.append(f"  simulation vs {name}: max relative deviation {a['max_relative_deviation']:.2e} over the "
                     f"{a['points']} of {a['total']} points where it applies"
                     + (f" (worst at {where}, v={a['speed']:.3g})" if where else ""))
    criteria = agreement["eq13"]
    lines.append(f"  (applies: speed change in the potential shifts the loss by < {criteria['max_sensitivity']:.0%}, "
                 f"the box holds the pass within +-{criteria['interaction_window'] / 2:g} widths)")
    lines.append(f"3D low speed: Eq. 13 / Eq. 23 = {ratio[0]:.4f} at v = {low_speed['curves'][0]['speed'][0]:g} "
                 f"(-> 1 as v -> 0), {ratio[-1]:.3f} at v = {low_speed['curves'][0]['speed'][-1]:g}")
    params, a13, a14 = chain["parameters"], agreement["eq13"], agreement["eq14"]
    notes = (f"Fig. 2 chain: {len(chain['curves'])} curves x {len(params['speeds'])} speeds,\n"
             f"{params['size']} masses, {seconds:.0f} s\n\n"
             f"simulation vs Eq. 13: max rel. deviation {a13['max_relative_deviation']:.1e}\n"
             f"simulation vs Eq. 14: max rel. deviation {a14['max_relative_deviation']:.1e}\n"
             f"over the {a14['points']} of {a14['total']} points where the\nperturbative theory applies\n\n"
             f"3D: Eq. 13 / Eq. 23 = {ratio[0]:.4f} at v = {low_speed['curves'][0]['speed'][0]:g}")
    figure = plotting.demo(chain, low_speed, notes=notes, excluded=experiments.exclusions(chain, "eq13"),
                           reasons=agreement["eq13"]["reasons"])
    png_path = plotting.save(figure, out / "demo.png")
    print("\n".join(lines))
    print(f"wrote {png_path} and {json_path}")
    return 0


def figure(args):
    """One of the paper's figures: data (JSON, written as it goes) and plot."""
    from . import experiments, plotting

    run = getattr(experiments, f"fig{args.number}")
    options = dict(quick=args.quick, out=args.out)
    if args.size is not None:
        options["size"] = args.size
    data = run(**options)
    path = plotting.save(getattr(plotting, f"fig{args.number}")(data), Path(args.out) / f"fig{args.number}.png")
    print(f"wrote {path} and {Path(args.out) / f'fig{args.number}.json'}")
    return 0


def _loss_system(args):
    import jax.numpy as jnp

    from .lattice import Chain, SimpleCubic
    from .potentials import Gaussian
    from .system import System

    spacing = {} if args.spacing is None else dict(spacing=args.spacing)
    if args.lattice == "cubic":
        lattice = SimpleCubic(k1=15.0 if args.k1 is None else args.k1, k2=5.0 if args.k2 is None else args.k2, **spacing)
        sites = [(0, 0, 0)]
    else:
        lattice = Chain(k_par=99 / 4 if args.k1 is None else args.k1, k_perp=99 / 4 if args.k2 is None else args.k2,
                        kappa_par=args.kappa, kappa_perp=args.kappa, **spacing)
        sites = [(0,)]
    return System(lattice, Gaussian(args.phi0, args.width), sites=sites, mass=(jnp.inf, jnp.inf, 1.0))


def loss(args):
    """A loss-versus-speed curve: printed table, CSV and JSON."""
    import jax.numpy as jnp
    import numpy as np

    from . import dissipation
    from .simulation import single_pass

    if args.speeds is not None:
        speeds = np.asarray(args.speeds, dtype=float)
    else:
        lowest, highest, count = args.speed_range
        if not 0 < lowest <= highest or count != int(count) or count < 1:
            raise ValueError(f"--speed-range needs 0 < A <= B and an integer N >= 1, got {lowest:g} {highest:g} {count:g}")
        speeds = np.geomspace(lowest, highest, int(count))
    system = _loss_system(args)
    start = (0.0, args.s)
    if args.method == "closed-form" and args.lattice != "chain":
        raise ValueError("--method closed-form is Eq. 14, the chain's closed form: use it with --lattice chain")
    if args.method == "perturbative":
        losses = dissipation.loss_perturbative(system, jnp.asarray(speeds), start)
    elif args.method == "low-speed":
        losses = dissipation.loss_low_speed(system, jnp.asarray(speeds), start)
    elif args.method == "closed-form":
        losses = dissipation.loss_chain_closed_form(system.lattice, system.potential, jnp.asarray(speeds), args.s)
    else:
        size = args.size or (100 if args.lattice == "chain" else 16)
        losses = single_pass(system, jnp.asarray(speeds), start=start, method="full", size=size).loss
    losses = np.asarray(losses, dtype=float)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"loss_{args.lattice}_{args.method}"
    temporary = out / f".{stem}.csv.tmp"
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["speed", "loss"])
        writer.writerows(zip(speeds.tolist(), losses.tolist()))
    os.replace(temporary, out / f"{stem}.csv")
    parameters = {key: value for key, value in vars(args).items() if key not in ("func", "command")}
    _write_json(out / f"{stem}.json", dict(parameters=parameters, speed=speeds, loss=losses, units=LOSS_UNITS))
    print(f"{'speed (l/period)':>16} {'loss (hbar Omega)':>18}")
    for v, d in zip(speeds, losses):
        print(f"{v:16.5g} {d:18.6e}")
    print(f"wrote {out / (stem + '.csv')} and {out / (stem + '.json')}\n({LOSS_UNITS['note']})")
    return 0


def bench(args):
    """Run the benchmark suite of a source checkout."""
    runner = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"
    if not runner.exists():
        print("jaxion: the benchmarks live in the source repository (benchmarks/run_all.py); "
              "clone it and run `jaxion bench` there", file=sys.stderr)
        return 1
    return subprocess.call([sys.executable, str(runner)] + (["--quick"] if args.quick else []), cwd=runner.parents[1])


def build_parser():
    parser = argparse.ArgumentParser(prog="jaxion", description="A mobile ion in a vibrating crystal framework.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,figure,loss,bench}")

    p = commands.add_parser("demo", help="reproduce Fig. 2 (chain) and the 3D low-speed limit in a few minutes")
    p.add_argument("--out", type=_output_dir, default="out", help="output directory (default: out)")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    p.set_defaults(func=demo)

    p = commands.add_parser("figure", help="data and plot of one of the paper's figures")
    p.add_argument("number", type=int, choices=(2, 4, 5, 6))
    p.add_argument("--size", type=_positive(int), help="lattice side L (chain: number of masses)")
    p.add_argument("--quick", action="store_true", help="few speeds, small lattice")
    p.add_argument("--out", type=_output_dir, default="out", help="output directory (default: out)")
    p.set_defaults(func=figure)

    p = commands.add_parser("loss", help="single-pass loss versus speed for given parameters")
    p.add_argument("--lattice", choices=("cubic", "chain"), default="cubic")
    p.add_argument("--k1", type=float, help="cubic: nearest-neighbour spring (15); chain: k_par (99/4)")
    p.add_argument("--k2", type=float, help="cubic: next-nearest spring (5); chain: k_perp (99/4)")
    p.add_argument("--kappa", type=float, default=1.0, help="chain on-site confinement (default 1)")
    p.add_argument("--spacing", type=_positive(float), help="lattice constant (cubic 2, chain 1)")
    p.add_argument("--phi0", type=float, default=0.01, help="Gaussian amplitude (default 0.01)")
    p.add_argument("--width", type=_positive(float), default=1.0, help="Gaussian width lambda (default 1)")
    p.add_argument("--s", type=float, default=0.0, help="impact parameter along y (default 0)")
    speeds = p.add_mutually_exclusive_group()
    speeds.add_argument("--speeds", type=_speed_list, help="comma-separated speeds, e.g. 1,2,5")
    speeds.add_argument("--speed-range", type=float, nargs=3, metavar=("A", "B", "N"), default=(1.0, 80.0, 20),
                        help="N log-spaced speeds from A to B (default 1 80 20)")
    p.add_argument("--method", choices=("perturbative", "low-speed", "closed-form", "full"), default="perturbative")
    p.add_argument("--size", type=_positive(int), help="lattice side for --method full (cubic 16, chain 100)")
    p.add_argument("--out", type=_output_dir, default="out", help="output directory (default: out)")
    p.set_defaults(func=loss)

    p = commands.add_parser("bench", help="run the benchmark suite (source checkout)")
    p.add_argument("--quick", action="store_true", help="small sizes")
    p.set_defaults(func=bench)
    return parser


class _Stop(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread between Python operations."""


def _stop(signum, frame):
    """Signal handler: ignore further signals (the partial results are being saved), then stop."""
    for name in ("SIGINT", "SIGTERM"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def _one_line(error):
    return " ".join(str(error).split("\n")[0].split()) or type(error).__name__


def main(argv=None):
    """Entry point; returns the exit status (2 for bad arguments, 1 for a failed run, 130 / 143 when
    stopped by SIGINT / SIGTERM)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .simulation import IncompletePassError, NonFiniteTrajectoryError

    handlers = _install(_stop)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"jaxion: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (NonFiniteTrajectoryError, IncompletePassError) as error:
        print(f"jaxion: failed: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        name = str(stop) if isinstance(stop, _Stop) else "SIGINT"
        print(f"jaxion: stopped by {name}; figure runs keep what they finished in *.partial.json, and earlier "
              "complete files are unchanged", file=sys.stderr)
        return 128 + int(getattr(signal, name))
    finally:
        for name, handler in handlers.items():
            signal.signal(getattr(signal, name), handler)


def _install(handler):
    """Install ``handler`` for SIGINT and SIGTERM (main thread only); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {name: signal.signal(getattr(signal, name), handler) for name in ("SIGINT", "SIGTERM")}


if __name__ == "__main__":
    sys.exit(main())
