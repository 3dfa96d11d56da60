"""Generate the benchmark table from ``benchmarks/results/*.json``.

    python benchmarks/report.py [--results DIR] [--out DIR] [--print] [--write-docs [--docs FILE]]

By default the table is printed (its headline part) and written whole to
``out/benchmarks/benchmarks.md`` (git-ignored), so running this leaves ``git status`` clean.
``--print`` prints the whole table and writes nothing. ``--write-docs`` is the explicit way to
refresh the committed record: it rewrites the table in ``docs/benchmarks.md`` (never the README).

Every timing in a result file is a dict with ``median`` (and ``min``/``max``, optionally
``unit``, default seconds) somewhere inside the JSON; bare numbers are reported when their key
says what they are: a ratio or speed-up (``ratio``, ``speedup``, ``bound``), seconds,
``..._bytes_per_second`` (GB/s) or ``..._bytes`` (GiB). Entries of lists are named by their
``name``/``label`` or identifying fields (``size``, ``dtype``, ``solver``, ...). A file's ``machine`` entry
(``benchmarks/_common.machine_info()``) names the machine; results measured on a GPU go in
their own column. With ``--write-docs`` the table replaces whatever is between
``<!-- bench:start -->`` and ``<!-- bench:end -->`` in ``docs/benchmarks.md``, so it is never typed
by hand.
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "out" / "benchmarks"  # git-ignored
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
RATIO_WORDS = ("ratio", "speedup", "speed_up", "bound")
SKIP_KEYS = {"machine", "parameters", "config", "versions", "quick"}
TIMING_KEYS = ("min", "median", "max", "warmup", "unit")
DETAIL_WORDS = ("bare_scan", "naive", "per_period", "warmup", "cpu_seconds", "compile", "triad", "precompute",
                "kernels", "fits", "soe_history_accuracy", "comparison", "checks")  # the last five: bench_history's fit data
IDENTITY_KEYS = ("name", "label", "method", "solver", "size", "L", "n", "dtype")


def _is_gpu(machine):
    text = json.dumps(machine).lower()
    return any(word in text for word in ("gpu", "cuda", "nvidia", "rocm"))


def _machine_name(machine):
    """A short human name of the machine from ``machine_info()``'s fields (whatever is present)."""
    if not isinstance(machine, dict):
        return str(machine) if machine else "unknown machine"
    keys = ("device", "device_kind", "gpu", "cpu", "processor", "cores", "cpu_count", "memory_gib", "platform")
    parts = []
    for key in keys:
        value = machine.get(key)
        if value in (None, "", []):
            continue
        text = f"{value} cores" if key in ("cores", "cpu_count") else f"{value} GiB" if key == "memory_gib" else str(value)
        if text not in parts:
            parts.append(text)
    return ", ".join(parts[:4]) if parts else "unknown machine"


def _format(value, unit):
    if unit in ("s", "seconds"):
        if value < 1e-3:
            return f"{value * 1e6:.3g} µs"
        if value < 1:
            return f"{value * 1e3:.3g} ms"
        return f"{value:.3g} s"
    return f"{value:.3g}" + (f" {unit}" if unit else "")


def _number(key, value):
    """Text for a bare number whose key says what it is, or ``None`` for numbers not reported."""
    key = key.lower()
    if any(word in key for word in RATIO_WORDS):
        return f"{value:.3g}"
    if "bytes_per_second" in key:
        return f"{value / 1e9:.3g} GB/s"
    if key.endswith("bytes"):
        return f"{value / 2**30:.3g} GiB"
    if "seconds" in key:
        return _format(value, "s")
    return None


def _item_label(item, index):
    """A list entry's name: its ``name``/``label`` or its identifying fields (``size=32 float64``)."""
    if not isinstance(item, dict):
        return str(index)
    if item.get("name") or item.get("label"):
        return str(item.get("name") or item.get("label"))
    fields = [f"{key}={item[key]}" if key in ("size", "L", "n") else str(item[key])
              for key in IDENTITY_KEYS if isinstance(item.get(key), (str, int))]
    if not fields and "median" in item:  # a bare timing: its other scalars say what was timed
        fields = [f"{key}={value:g}" if isinstance(value, (int, float)) else f"{key}={value}"
                  for key, value in item.items()
                  if key not in TIMING_KEYS and isinstance(value, (str, int, float)) and not isinstance(value, bool)]
    return " ".join(fields) if fields else str(index)


def _measurements(node, path=()):
    """Yield ``(label, text)`` for every timing dict and every reported number under ``node``."""
    if isinstance(node, dict):
        if "median" in node and isinstance(node["median"], (int, float)):
            unit = node.get("unit", "s")
            text = _format(node["median"], unit)
            if isinstance(node.get("min"), (int, float)) and isinstance(node.get("max"), (int, float)):
                text += f" ({_format(node['min'], unit)} – {_format(node['max'], unit)})"
            yield " / ".join(path), text
            return
        for key, value in node.items():
            if key in SKIP_KEYS or key in IDENTITY_KEYS:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                text = _number(key, value)
                if text is not None:
                    yield " / ".join(path + (key,)), text
            else:
                yield from _measurements(value, path + (str(key),))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _measurements(item, path + (_item_label(item, i),))


def collect(results):
    """``rows[(benchmark, measurement)][column] = text`` and the machine named for each column."""
    rows, machines = {}, {}
    for path in sorted(Path(results).glob("*.json")):
        if path.name == "run_all.json":
            continue
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            print(f"report: skipping {path.name}: {error}", file=sys.stderr)
            continue
        if not isinstance(payload, dict):
            continue
        machine = payload.get("machine", {})
        column = "GPU" if _is_gpu(machine) else "CPU"
        machines.setdefault(column, set()).add(_machine_name(machine))
        quick = payload.get("quick") or (payload.get("parameters") or {}).get("quick")
        name = payload.get("name", path.stem) + (" (quick)" if quick else "")
        for label, text in _measurements(payload):
            label = label.removeprefix("results / ")  # the usual top-level list adds no information
            rows.setdefault((name, label), {})[column] = text
    return rows, machines


def _markdown(rows, columns):
    lines = ["| benchmark | measurement | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for (name, label), values in sorted(rows.items()):
        lines.append(f"| {name} | {label or '-'} | " + " | ".join(values.get(c, "") for c in columns) + " |")
    return lines


def table(rows, machines):
    """Markdown: the headline measurements (a CPU column, and a GPU column when any result came
    from a GPU), then every measurement in a collapsed ``<details>`` block."""
    if not rows:
        return "_No benchmark results yet: run `python benchmarks/run_all.py`._"
    columns = [c for c in ("CPU", "GPU") if c in machines]
    headline = {key: value for key, value in rows.items() if not any(word in key[1] for word in DETAIL_WORDS)}
    lines = ["Median over repeats (min – max). " + "; ".join(
        f"**{c}**: {' / '.join(sorted(machines[c]))}" for c in columns) + ".", ""]
    lines += _markdown(headline, columns)
    lines += ["", f"<details><summary>All {len(rows)} measurements</summary>", ""]
    lines += _markdown(rows, columns)
    lines += ["", "</details>"]
    return "\n".join(lines)


def rewrite(document, text):
    """Replace the marked section of ``document`` with ``text``; ``ValueError`` if the markers are
    missing or the document is a README (the front page never holds the generated table)."""
    document = Path(document)
    if document.name.lower() == "readme.md":
        raise ValueError(f"{document}: the benchmark table goes into docs/benchmarks.md, never the README")
    if not document.exists():
        raise ValueError(f"{document} does not exist")
    lines = document.read_text().splitlines(keepends=True)
    # the markers count only on lines of their own, so prose that names them is left alone
    starts = [i for i, line in enumerate(lines) if line.strip() == START]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(f"{document} needs the markers {START} and {END} once each, on lines of their own, "
                         "in that order")
    head, tail = "".join(lines[: starts[0]]), "".join(lines[ends[0] + 1:])
    document.write_text(f"{head}{START}\n{text}\n{END}\n{tail}")


def headline(text):
    """The table without its collapsed ``<details>`` block of every measurement."""
    return text.split("\n\n<details>", 1)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(HERE / "results"),
                        help="folder of the benchmarks' JSON (default: benchmarks/results)")
    parser.add_argument("--out", default=str(OUT),
                        help="folder for the generated table, benchmarks.md (default: out/benchmarks, git-ignored)")
    parser.add_argument("--print", action="store_true", help="print the whole table and write nothing")
    parser.add_argument("--write-docs", action="store_true",
                        help="rewrite the committed table in docs/benchmarks.md (between its markers)")
    parser.add_argument("--docs", default=str(DOCS), help="the page --write-docs rewrites (default: docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"report: error: no results folder {args.results}", file=sys.stderr)
        return 2
    text = table(*collect(args.results))
    if args.print:
        print(text)
        return 0
    if args.write_docs:
        try:
            rewrite(args.docs, text)
        except ValueError as error:
            print(f"report: error: {error}", file=sys.stderr)
            return 2
        print(f"report: wrote the benchmark table into {args.docs}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.md").write_text(text + "\n")
    print(headline(text))
    print(f"\nreport: wrote the whole table into {out / 'benchmarks.md'} "
          f"(docs/benchmarks.md is rewritten only with --write-docs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
