"""Peak memory of ``compress export RUN --target cpu`` (issue 22): one run of the command in a subprocess.

    nice -n 19 python benchmarks/export_memory.py --run RUN --label after [--code /path/to/checkout]
        [--kill-at-gb 8] [--out benchmarks/results/export_memory_cpu.json]

Peak RSS is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the child exits. ``--kill-at-gb`` stops a child whose
resident memory passes the limit (polled every 0.1 s) so that measuring the old code cannot take the shared
machine down with it; the record then says it was stopped there, which is a lower bound of its peak. Each
label's row is merged into the JSON record and the Markdown table beside it is rewritten. Memory, not time: it
may be measured on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

GIB = 1024 ** 3


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder (or checkpoint) to export")
    parser.add_argument("--label", required=True, help="row name, e.g. before / after")
    parser.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="checkout on PYTHONPATH")
    parser.add_argument("--kill-at-gb", type=float, default=8.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "export_memory_cpu.json"))
    args = parser.parse_args()

    out_dir = Path(tempfile.mkdtemp(prefix="export-memory-")) / "export"
    command = [sys.executable, "-m", "compress", "export", args.run, "--target", "cpu", "--out", str(out_dir)]
    env = {**os.environ, "PYTHONPATH": args.code}
    start = time.time()
    log_path = out_dir.parent / "export.log"
    with log_path.open("w") as log_file:
        child = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        killed = False
        while child.poll() is None:
            if rss_bytes(child.pid) > args.kill_at_gb * GIB:
                child.kill()
                killed = True
                break
            time.sleep(0.1)
        child.wait()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    log = log_path.read_text(errors="replace").strip().splitlines()
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    row = {"label": args.label, "code": args.code, "peak_rss_gb": round(peak / GIB, 2), "killed_at_limit": killed,
           "kill_at_gb": args.kill_at_gb, "exit_code": child.returncode, "wall_s_under_load": round(time.time() - start),
           "last_lines": log[-6:]}
    record_path = Path(args.out)
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record.update({"command": " ".join(["compress", "export", "RUN", "--target", "cpu", "--out", "OUT"]),
                   "cpu": cpu_model(), "cores": os.cpu_count(),
                   "memory_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
                   "python": platform.python_version()})
    record.setdefault("rows", {})[args.label] = row
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Peak memory of `compress export RUN --target cpu` (default settings)", "",
             f"CPU: {record['cpu']} ({record['cores']} cores), {record['memory_total_gb']} GB RAM; Python "
             f"{record['python']}. Peak RSS = `getrusage(RUSAGE_CHILDREN).ru_maxrss` of the export subprocess "
             "(`benchmarks/export_memory.py`), one run each, measured under load with `nice -n 19` (memory, not "
             "time). A run stopped at the limit was killed by the script on purpose: its peak is at least that.", "",
             f"Run: {record.get('run_note', '')}", "",
             "| code | peak RSS (GB) | stopped at limit | exit code | wall s (loaded machine) |", "|---|---|---|---|---|"]
    for r in record["rows"].values():
        lines.append(f"| {r['label']} (`{r['code']}`) | {r['peak_rss_gb']} | "
                     f"{'yes, at ' + str(r['kill_at_gb']) + ' GB' if r['killed_at_limit'] else 'no'} | "
                     f"{r['exit_code']} | {r['wall_s_under_load']} |")
    record_path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
