from __future__ import annotations

import pytest

from service import cli
from service.settings import settings


def test_serve_runs_the_front_on_the_port_and_the_app_behind_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    configs, calls = [], []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(settings, "port", 9999)
    assert cli.main(["serve", "--host", "127.0.0.1"]) == 0
    ((front),) = configs
    assert front.host == "127.0.0.1" and front.port == 9999 and front.workers == 1
    assert cli.main(["serve", "--uds", "/tmp/x.sock"]) == 0  # what the front starts: the app with the model
    ((app, kwargs),) = calls
    assert app.title == "Prompter" and kwargs["uds"] == "/tmp/x.sock" and kwargs["workers"] == 1


def test_serve_without_the_front_runs_one_uvicorn_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(settings, "front", False)
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
