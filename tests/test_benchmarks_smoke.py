"""The benchmark harness runs end to end (on fakeredis, a few hundred operations)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._report import (
    Goal,
    GoalCheck,
    RunInfo,
    ScenarioResult,
    machine_info,
    summary_lines,
)

ROOT = Path(__file__).resolve().parent.parent

HIT_VARIANTS = {
    "raw redis-py",
    "Cache.get",
    "Cache.get_or_load",
    "@Cache.cached",
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


def test_the_run_prints_a_summary_and_plain_progress_when_piped(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--scenario", "hit"]
    cmd += ["--target", "fakeredis", "--ops", "40", "--rounds", "1"]
    cmd += ["--results-dir", str(tmp_path)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=50, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # stdout: a summary, not the tables (they are in the report).
    assert "|---" not in proc.stdout
    assert len(proc.stdout.splitlines()) < 30, proc.stdout
    assert f"Full tables and charts: {tmp_path / 'report.md'}" in proc.stdout
    assert "|---" in (tmp_path / "report.md").read_text()
    # stderr is a pipe here: plain progress lines, no bar's escape codes.
    assert "[hit " in proc.stderr
    assert "\x1b[" not in proc.stderr


def test_runs_write_to_a_git_ignored_folder_unless_updating_the_reference() -> None:
    from benchmarks import _cli

    assert _cli.parse_args([]).results_dir == _cli.LATEST_DIR
    assert _cli.parse_args(["--update-reference"]).results_dir == _cli.REFERENCE_DIR
    assert _cli.parse_args(["--results-dir", "/tmp/x"]).results_dir == Path("/tmp/x")
    with pytest.raises(SystemExit):
        _cli.parse_args(["--update-reference", "--results-dir", "/tmp/x"])
    with pytest.raises(SystemExit):
        _cli.parse_args(["--update-reference", "--quick"])
    with pytest.raises(SystemExit, match="needs a real Redis"):
        _cli.main(["--update-reference", "--target", "fakeredis", "--scenario", "hit"])
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path, ignored in (
        ("benchmarks/results/latest/hit.json", True),
        ("benchmarks/results/latest/report.md", True),
        ("benchmarks/results/hit.json", False),
    ):
        check = subprocess.run(
            ["git", "check-ignore", "-q", path], cwd=ROOT, check=False, capture_output=True
        )
        assert (check.returncode == 0) is ignored, path


def _run_info(quick: bool, speed_figure: bool = True) -> RunInfo:
    return RunInfo("t", "private", speed_figure, "redis 7", machine_info(), quick)


def _result_with_goal(met: bool) -> ScenarioResult:
    result = ScenarioResult("lock", "d", "raw", {}, [])
    line = "hand-off 3.2x faster than cashews (repeats: 1.2-2.3x) [target ≥ 6x] ✗"
    result.goals = [GoalCheck(Goal("c", "lib", "cashews", 6.0), 3.2, met, line)]
    return result


def test_a_quick_summary_says_indicative_and_the_command_for_the_real_figure() -> None:
    lines = summary_lines([_result_with_goal(False)], _run_info(quick=True), ["lock"])
    text = "\n".join(lines)
    assert "indicative" in text
    assert "(repeats: 1.2-2.3x)" in text
    assert "    python -m benchmarks --scenario lock" in lines, "the command on a line of its own"
    assert all(len(line) <= 80 for line in lines if "target" not in line)


def test_a_full_run_says_a_missed_target_is_not_fatal() -> None:
    text = "\n".join(summary_lines([_result_with_goal(False)], _run_info(quick=False), []))
    assert "indicative" not in text
    assert "not fatal" in text
    met = "\n".join(summary_lines([_result_with_goal(True)], _run_info(quick=False), []))
    assert "not fatal" not in met


def test_chart_numbers_are_never_scientific() -> None:
    from benchmarks._report import _number

    assert _number(10_512.4) == "10,512"
    assert _number(1_050_000.0) == "1,050,000"
    assert _number(42.0) == "42"
    assert _number(791.9) == "792"
    assert _number(3.456) == "3.46"
    assert "e" not in _number(0.000123)


def test_plain_progress_says_still_running_during_a_long_silent_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import _cli

    monkeypatch.setattr(_cli, "_PLAIN_EVERY", 0.2)
    progress = _cli._PlainProgress()
    progress.start("hit", 3)
    progress.step("one hot key: raw redis-py")
    deadline = time.monotonic() + 10
    while "still running" not in capsys.readouterr().err and time.monotonic() < deadline:
        time.sleep(0.05)
    progress.close()
    assert time.monotonic() < deadline, "no 'still running' line"
    progress.step("1,000 keys: Cache.get")
    err = capsys.readouterr().err
    assert "[hit 2/3] 1,000 keys: Cache.get" in err
