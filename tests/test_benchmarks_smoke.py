"""The benchmark harness runs end to end (on fakeredis, a few hundred operations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HIT_VARIANTS = {
    "raw redis-py",
    "Cache.get",
    "Cache.get_or_load",
    "@Cache.cached",
    "Cache.get (near)",
    "near floor",
    "cashews get",
    "cashews @cache",
    "aiocache get",
    "aiocache @cached",
    "redis-infra get",
    "redis-infra get_or_set",
}


def test_quick_hit_on_fakeredis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--scenario", "hit"]
    cmd += ["--target", "fakeredis", "--ops", "60", "--rounds", "1"]
    cmd += ["--results-dir", str(tmp_path), "--no-progress"]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=50, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "embedded, not a speed figure" in proc.stdout

    data = json.loads((tmp_path / "hit.json").read_text())
    assert data["scenario"] == "hit"
    assert data["run"]["target_kind"] == "fakeredis"
    assert data["run"]["speed_figure"] is False
    assert [c["name"] for c in data["cases"]] == [
        "hot-c1",
        "hot-c50",
        "keys1000-c1",
        "keys1000-c50",
    ]
    for case in data["cases"]:
        outcomes = {o["name"]: o for o in case["outcomes"]}
        assert set(outcomes) == HIT_VARIANTS
        for name in ("raw redis-py", "Cache.get", "Cache.get_or_load", "@Cache.cached"):
            assert outcomes[name]["status"] == "ok", outcomes[name]
            assert outcomes[name]["ops_per_s"] > 0
        # Peers that connect by URL cannot use the embedded server: skipped, not failed.
        for name in ("cashews get", "cashews @cache", "aiocache get", "aiocache @cached"):
            assert outcomes[name]["status"] == "skipped", outcomes[name]
        assert all(o["status"] != "failed" for o in case["outcomes"]), case
    assert data["summary"], "one summary line per target"
    assert all("embedded, not a speed figure" in line for line in data["summary"])
