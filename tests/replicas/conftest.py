"""Two `prompter serve` replicas on one PostgreSQL database of the session's throwaway cluster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.demo.processes import PrompterServer
from tests.pg_cluster import PostgresCluster
from tests.served import save_tiny_model, server

# The agent refines only when a test asks (POST /refine), with the two strategies that need no extra model.
AGENT_ENV = {
    "PROMPTER_AGENT_DISAGREEMENTS_TRIGGER": "100000",
    "PROMPTER_AGENT_STRATEGIES": '["fixed_demos", "definitions"]',
}


@dataclass
class Replicas:
    a: PrompterServer
    b: PrompterServer
    database_url: str

    @property
    def both(self) -> tuple[PrompterServer, PrompterServer]:
        return self.a, self.b

    def log_errors(self) -> list[str]:
        return [f"{name}: {line}" for name, s in zip("ab", self.both, strict=True) for line in s.log_errors()]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def replicas(
    postgres: PostgresCluster, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Both servers launched at the same moment on one fresh (unmigrated) database: they migrate it together."""
    url = postgres.create_database("replicas")
    root = tmp_path_factory.mktemp("replicas")
    pair = Replicas(*(server(root / name, tiny_model_dir, url, **AGENT_ENV) for name in "ab"), database_url=url)
    try:
        for replica in pair.both:
            replica.launch()
        for replica in pair.both:
            replica.wait_ready()
        yield pair
    finally:
        for replica in pair.both:
            replica.stop()
        postgres.drop_database(url)
