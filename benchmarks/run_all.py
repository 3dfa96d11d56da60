"""Run every ``benchmarks/bench_*.py`` and report the benchmark table.

    python benchmarks/run_all.py [--quick] [--only full local ...] [--out DIR] [--no-report]
    python benchmarks/run_all.py --write-docs [...]     # refresh the committed results and docs table

Each script runs in its own process (so one benchmark's memory and compile caches do not
distort the next) with ``--quick`` passed through, in the folder ``--out`` (default the
git-ignored ``out/``), and writes its JSON into ``OUT/benchmarks/results/`` (named by the
environment variable ``JAXION_BENCH_RESULTS``, ``_common.results_dir``; a script run alone writes
into ``out/benchmarks/results/`` too). The table is printed and written to
``OUT/benchmarks/benchmarks.md``, and the repository is left untouched (``git status`` stays
clean; ``jaxion bench [--quick]`` runs this default). With ``--write-docs`` the scripts run in
the repository root and their JSON replaces the committed ``benchmarks/results/*.json`` (quick
runs write ``*_quick.json``, git-ignored), and ``report.py --write-docs`` rewrites the table between the
``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers of ``docs/benchmarks.md``.
This runner records which scripts ran, how long and whether they succeeded in
``run_all.json`` beside the results.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "out"  # git-ignored


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


def run(script, quick, cwd=ROOT):
    """Run one script in ``cwd`` (its JSON goes to ``cwd/benchmarks/results/``); returns its status record."""
    command = [sys.executable, str(script)] + (["--quick"] if quick else [])
    print(f"== {script.name}{' --quick' if quick else ''}", flush=True)
    env = dict(os.environ, JAXION_BENCH_RESULTS=str(Path(cwd).resolve() / "benchmarks" / "results"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))  # jaxion without install
    began = time.perf_counter()
    code = subprocess.call(command, cwd=cwd, env=env)
    seconds = time.perf_counter() - began
    print(f"== {script.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.1f} s", flush=True)
    return dict(script=script.name, returncode=code, seconds=seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. full local)")
    parser.add_argument("--out", default=str(OUT),
                        help="folder the scripts run in: JSON to OUT/benchmarks/results/, table to "
                             "OUT/benchmarks/benchmarks.md (default: out, git-ignored)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the JSON into the committed benchmarks/results/ and the table into "
                             "docs/benchmarks.md")
    parser.add_argument("--no-report", action="store_true", help="do not generate the table")
    args = parser.parse_args(argv)
    workdir = ROOT if args.write_docs else Path(args.out).resolve()
    results = workdir / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    records = [run(script, args.quick, workdir) for script in scripts(args.only)]
    summary = dict(date=time.strftime("%Y-%m-%d %H:%M:%S"), quick=args.quick, host=platform.node(), runs=records)
    (results / "run_all.json").write_text(json.dumps(summary, indent=1))
    print(f"run_all: results in {results}", flush=True)
    if not args.no_report:
        sys.path.insert(0, str(HERE))
        import report

        if args.write_docs:
            report.main(["--results", str(results), "--write-docs"])
        else:
            report.main(["--results", str(results), "--out", str(workdir / "benchmarks")])
    failed = [r["script"] for r in records if r["returncode"] != 0]
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
