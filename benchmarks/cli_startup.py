"""How long `compress --version`, `--help`, `list models`, `schema` and `distill --help` take to answer, and
their peak memory: the wall time and the peak RSS of each command as a fresh process (`python -m compress`),
the median of several runs, for each code tree given (e.g. main's and a branch's), interleaved so that load
drifting on a shared machine hits every tree alike.

    python benchmarks/cli_startup.py --tree before=/work/main --tree after=. --runs 5

writes benchmarks/results/cli_startup_cpu.{md,json}. Each process's own peak RSS comes from ``os.wait4``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--version",), ("--help",), ("list", "models"), ("schema",), ("distill", "--help"))


def run_once(tree: Path, args: tuple[str, ...]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``python -m compress ARGS`` with ``tree`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    start = time.perf_counter()
    # cwd=tree: `python -m` puts the working folder first on the path, before PYTHONPATH
    child = subprocess.Popen([sys.executable, "-m", "compress", *args], env=env, cwd=tree,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    if child.returncode != 0:
        raise SystemExit(f"compress {' '.join(args)} failed ({child.returncode}) with {tree}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def measure(trees: dict[str, Path], runs: int) -> list[dict[str, object]]:
    rows = []
    for args in COMMANDS:
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(runs):
            for name, tree in trees.items():  # interleaved: drift hits every tree alike
                samples[name].append(run_once(tree, args))
        for name, values in samples.items():
            rows.append({"command": "compress " + " ".join(args), "tree": name, "runs": runs,
                         "wall_s_median": round(statistics.median(v[0] for v in values), 3),
                         "wall_s_min": round(min(v[0] for v in values), 3),
                         "peak_rss_mib_median": round(statistics.median(v[1] for v in values), 1)})
    return rows


def markdown(record: dict[str, object]) -> str:
    rows: list[dict[str, object]] = record["results"]  # type: ignore[assignment]
    trees = list(dict.fromkeys(str(r["tree"]) for r in rows))
    lines = [
        "# CLI start-up: wall time and peak RSS per command",
        "",
        f"CPU: {record['cpu']} ({record['cpus']} CPUs), Python {record['python']}. {record['note']}",
        "",
        f"Median of {record['runs']} runs per command and tree, runs interleaved between trees; each a fresh "
        "`python -m compress ...` process, peak RSS from `os.wait4`. Trees: "
        + ", ".join(f"{name} = `{path}`" for name, path in record["trees"].items()) + ".",  # type: ignore[union-attr]
        "",
        "| command | " + " | ".join(f"{t} wall s (min) | {t} peak RSS MiB" for t in trees) + " |",
        "|---|" + "---:|---:|" * len(trees),
    ]
    for command in dict.fromkeys(str(r["command"]) for r in rows):
        cells = []
        for tree in trees:
            r = next(r for r in rows if r["command"] == command and r["tree"] == tree)
            cells += [f"{r['wall_s_median']:.2f} ({r['wall_s_min']:.2f})", f"{r['peak_rss_mib_median']:.0f}"]
        lines.append(f"| `{command}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH",
                        help="a code tree to measure (its compress package is imported); repeat")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--note", default="", help="how the machine was loaded while this ran")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    trees = {name: Path(path) for name, path in (item.split("=", 1) for item in args.tree)}
    record: dict[str, object] = {
        "cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(), "runs": args.runs,
        "note": args.note, "trees": {name: str(path) for name, path in trees.items()},
        "results": measure(trees, args.runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli_startup_cpu.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "cli_startup_cpu.md").write_text(markdown(record))
    print(markdown(record))
    return record


if __name__ == "__main__":
    main()
