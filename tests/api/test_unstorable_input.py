"""Values the database cannot hold are the client's error (422 with a detail), on SQLite and on PostgreSQL.

Found by tests/fuzz: ids past the integer column's range (SQLite: past 64 bits; PostgreSQL: past 32 bits) and
NUL bytes in text (PostgreSQL) reached the database and came back as 500s.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.databases


@pytest.mark.parametrize("proposal_id", [2**31, 2**64, -(2**63) - 1])
def test_id_out_of_range_is_422(client: TestClient, db_url: str, proposal_id: int) -> None:
    fits = db_url.startswith("sqlite") and -(2**63) <= proposal_id < 2**63  # SQLite's INTEGER is 64 bits
    response = client.get(f"/proposals/{proposal_id}")
    assert response.status_code == (404 if fits else 422), response.text
    if not fits:
        assert response.json()["detail"].startswith("a value in the request cannot be stored or looked up")


def test_nul_byte_in_a_project_id_is_not_a_server_error(client: TestClient, db_url: str) -> None:
    response = client.get("/versions", params={"project": "a\x00b"})
    expected = 422 if db_url.startswith("postgresql") else 200
    assert response.status_code == expected, response.text
    assert client.get("/versions", params={"project": "1"}).status_code == 200  # the session is usable after
