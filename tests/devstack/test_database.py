"""The development database: which server `make run` and `make test` use, and the embedded one."""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest

from devstack import database


def test_a_given_database_url_is_used_as_it_is():
    url, server = database.database_url("tests", {"DATABASE_URL": "postgres://x@db:5432/y"})

    assert (url, server) == ("postgres://x@db:5432/y", None)


def test_the_suite_takes_the_local_server_when_it_answers(monkeypatch):
    monkeypatch.setattr(database, "server_answers", lambda *a, **k: True)

    assert database.database_url("tests", {}) == (database.LOCAL_SERVER_URL, None)


def test_nothing_listens_on_a_closed_port():
    assert database.server_answers(("127.0.0.1", 1)) is False


@pytest.fixture
def data_folder():
    """A folder under var/, as `make run` uses: run as root, the embedded server runs as
    a user of its own, which cannot enter pytest's private temporary folders."""
    folder = database.BASE_DIR / "var" / f"test-embedded-{os.getpid()}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_without_a_server_an_embedded_one_starts_keeps_its_data_and_stops(data_folder, monkeypatch):
    monkeypatch.setattr(database, "data_dir", lambda purpose: data_folder / purpose)
    monkeypatch.setattr(database, "server_answers", lambda *a, **k: False)

    url, server = database.database_url("tests", {})
    try:
        assert url.startswith("postgres://postgres@%2F")
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
    finally:
        server.cleanup()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url.replace("postgres://", "postgresql://"), connect_timeout=2)

    url, server = database.database_url("tests", {})
    try:
        with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (7,)
    finally:
        server.cleanup()
