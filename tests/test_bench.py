"""The speed benchmark still runs (a smoke run: meta-batch 4, 2 rounds); its numbers come from full runs only."""
import json
import subprocess
import sys

from tests.conftest import REPO


def test_speed_bench_smoke_run_reports_every_contestant(data_root, tmp_path):
    out = tmp_path / "speed.json"
    finished = subprocess.run([sys.executable, "bench/speed.py", "--quick", "--data-root", str(data_root),
                               "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(out.read_text())
    rows = {(row["solver"], row["contestant"]) for row in report["rows"]}
    assert rows == {(s, c) for s in ("fomaml", "maml") for c in ("reference", "l2l", "batched")}
    assert all(row["median_s"] > 0 and row["gflop"] > 0 for row in report["rows"])
    assert 0 < report["profile"]["batched"]["sample_share"] < 1
    assert report["load"]["cached_s"] < report["load"]["cold_s"]
    assert "speed-up over the reference loop" in finished.stdout
