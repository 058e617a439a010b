"""The busy-machine benchmark still runs (a smoke run); its numbers come from full runs only."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO


def busy_loops() -> list:
    """Processes still running bench/busy.py's pure-Python loop."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"for _ in range(100000)" in cmdline.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_busy_bench_smoke_run_reports_both_policies_quiet_and_busy(data_root, tmp_path):
    out = tmp_path / "busy.json"
    before = set(busy_loops())
    finished = subprocess.run([sys.executable, "bench/busy.py", "--quick", "--data-root", str(data_root),
                               "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(out.read_text())
    assert {(e["policy"], e["busy"]) for e in report["summary"]} == {(p, b) for p in ("old", "new") for b in (0, 1)}
    for entry in report["summary"]:
        assert entry["step_s"] > 0 and entry["eval_s"] > 0
        assert entry["step_s_x_quiet"] == entry["step_s"] / next(
            e["step_s"] for e in report["summary"] if e["policy"] == entry["policy"] and e["busy"] == 0)
    busy_rows = [row for row in report["rows"] if row["busy"]]
    assert busy_rows and all(row["busy_cpu_cores"] > 0 for row in busy_rows)  # the busy processes did run
    assert "--solver fomaml" in report["command"] and "--threads" not in report["command"]
    # The markdown table: a header, a rule and one row per (policy, busy processes).
    table = [line for line in finished.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| policy | busy processes | meta-train step s")
    assert len(table) == 2 + 4 and all(line.count("|") == table[0].count("|") for line in table)
    assert set(busy_loops()) <= before  # and they were all stopped
