"""The example app's command line: the load-test flags reach the app and uvicorn."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn

from examples.blog_api import __main__ as cli


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_create_app(**kwargs: Any) -> str:
        seen["app"] = kwargs
        return "the app"

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen["run"] = (app, kwargs)

    monkeypatch.setattr(cli, "create_app", fake_create_app)
    monkeypatch.setattr(uvicorn, "run", fake_run)
    return seen


def test_defaults_keep_the_access_log_and_100_a_minute(calls: dict[str, Any]) -> None:
    cli.main(["--db", "x.db"])
    assert calls["app"]["rate_limit"] == 100
    app, kwargs = calls["run"]
    assert app == "the app"
    assert kwargs["access_log"] is True


def test_load_test_flags(calls: dict[str, Any]) -> None:
    cli.main(["--db", "x.db", "--rate-limit", "1000000", "--no-access-log", "--port", "8123"])
    assert calls["app"]["rate_limit"] == 1_000_000
    _, kwargs = calls["run"]
    assert kwargs["access_log"] is False
    assert kwargs["port"] == 8123


@pytest.mark.parametrize("bad", ["0", "-5", "many"])
def test_a_rate_limit_below_one_is_refused(calls: dict[str, Any], bad: str) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--db", "x.db", "--rate-limit", bad])
    assert "app" not in calls
