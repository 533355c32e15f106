from __future__ import annotations

import pytest

from service import cli
from service.settings import settings


def test_serve_runs_one_uvicorn_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(settings, "port", 9999)
    assert cli.main(["serve", "--host", "127.0.0.1"]) == 0
    ((app, kwargs),) = calls
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 9999 and kwargs["workers"] == 1
    assert app.title == "Prompter"
    cli.main(["serve", "--port", "1234"])
    assert calls[1][1]["port"] == 1234 and calls[1][1]["host"] == settings.host


def test_unknown_or_missing_subcommand_exits(capsys) -> None:
    for argv in ([], ["nope"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    assert "serve" in capsys.readouterr().err
