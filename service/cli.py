"""The ``prompter`` command. Subcommands are registered in SUBCOMMANDS, the one place to add one.

Each entry names a ``configure(parser)`` function that adds the subcommand's arguments and sets
``run=<function taking the parsed args and returning an exit code>`` with ``parser.set_defaults``.
Only the chosen subcommand's module is imported, so heavy imports may stay at module level there.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from service.settings import settings

# name -> (help, "module:configure")
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("run the Label Studio ML backend (HTTP)", "service.cli:configure_serve"),
    "demo": ("Label Studio + Prompter on loopback with a sample project", "service.demo.run:configure"),
    "label": ("label a task file or a Label Studio project offline (resumable)", "service.offline.label:configure"),
    "eval": ("evaluate prompt versions against ground truth", "service.offline.eval:configure"),
    "simulate": ("run the agent loop offline on a labeled JSONL", "agent.simulate:configure"),
    "bench": ("the engine against outlines and a bare prefill, side by side", "service.bench.outlines:configure"),
    "bench-engines": (
        "the local and the vLLM engine on the same prompts, in one run",
        "service.bench.engines:configure",
    ),
}


def _resolve(target: str) -> Callable[[argparse.ArgumentParser], None]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help=f"interface to bind (default {settings.host})")
    parser.add_argument("--port", type=int, default=None, help=f"port (default {settings.port})")
    parser.add_argument("--log-level", default=None, help=f"uvicorn log level (default {settings.log_level})")
    parser.add_argument("--uds", default=None, help=argparse.SUPPRESS)  # the front's backend (service/front.py)
    parser.set_defaults(run=serve)


def serve(args: argparse.Namespace) -> int:
    """One uvicorn worker holds the model (loaded once); by default behind the front (service/front.py), which owns
    the port and answers /health at once whatever the model is doing."""
    import logging

    import uvicorn

    from service.api.app import create_app  # the web stack and the model: only for `serve` (see the docstring)
    from service.front import create_front, socket_path

    level = (args.log_level or settings.log_level).lower()
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the review actions' rule and the Host check depend on where Prompter listens: the backend behind the front
    # is told the front's address (it listens on a Unix socket itself)
    settings.host = args.host or settings.host
    if args.uds:
        uvicorn.run(create_app(), uds=args.uds, log_level=level, access_log=False, workers=1)  # the front logs requests
        return 0
    host, port = settings.host, args.port or settings.port
    if not settings.front:
        uvicorn.run(create_app(), host=host, port=port, log_level=level, workers=1)
        return 0

    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app = create_front(socket_path(), stop, level, host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=level, workers=1))
    server.run()
    mirror = getattr(app.state, "mirror", None)  # set once the front started its backend
    return 1 if mirror is not None and mirror.backend_exit is not None else 0  # the backend died: a supervisor restarts


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prompter", description="Label Studio ML backend with a local LLM.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, target) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _resolve(target)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
