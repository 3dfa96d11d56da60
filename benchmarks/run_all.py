"""Run every ``benchmarks/bench_*.py`` and regenerate the README benchmark table.

    python benchmarks/run_all.py [--quick] [--only full local ...] [--no-report]

Each script runs in its own process (so one benchmark's memory and compile caches do not
distort the next) with ``--quick`` passed through; each writes its JSON into
``benchmarks/results/`` itself. This runner records which scripts ran, how long and whether
they succeeded in ``benchmarks/results/run_all.json``, then calls ``report.py`` to rewrite the
table between the README's ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def scripts(only=None):
    """The ``bench_*.py`` scripts, optionally only those whose name (without ``bench_``) is listed."""
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        unknown = set(only) - {path.stem.removeprefix("bench_") for path in found}
        if unknown:
            raise SystemExit(f"run_all: error: no benchmark named {sorted(unknown)}; have "
                             f"{[path.stem.removeprefix('bench_') for path in found]}")
        found = [path for path in found if path.stem.removeprefix("bench_") in only]
    return found


def run(script, quick):
    """Run one script; returns its status record."""
    command = [sys.executable, str(script)] + (["--quick"] if quick else [])
    print(f"== {script.name}{' --quick' if quick else ''}", flush=True)
    began = time.perf_counter()
    code = subprocess.call(command, cwd=HERE.parent)
    seconds = time.perf_counter() - began
    print(f"== {script.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.1f} s", flush=True)
    return dict(script=script.name, returncode=code, seconds=seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. full local)")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite the README table")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = [run(script, args.quick) for script in scripts(args.only)]
    summary = dict(date=time.strftime("%Y-%m-%d %H:%M:%S"), quick=args.quick, host=platform.node(), runs=records)
    (RESULTS / "run_all.json").write_text(json.dumps(summary, indent=1))
    if not args.no_report:
        sys.path.insert(0, str(HERE))
        import report

        report.main([])
    failed = [r["script"] for r in records if r["returncode"] != 0]
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
