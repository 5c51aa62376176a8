"""A throw-away PostgreSQL server for tests: initdb into a temp dir, pg_ctl on a free port.

`start_postgres()` finds the server binaries under /usr/lib/postgresql/*/bin (or on
PATH), creates a cluster owned by the ``postgres`` user when running as root (the server
refuses to run as root), listens on 127.0.0.1 only with trust authentication and no
fsync (test data need not survive a crash), and returns a handle that creates fresh
databases and stops the server.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
    "-c full_page_writes=off -c max_connections=200"
)


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be started here (binaries or the postgres user missing)."""


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    as_user: str | None  # run binaries as this user (when we are root)
    user: str = "postgres"
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "tw", *, template: str | None = None) -> str:
        """A new database, empty or a clone of ``template``; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._psql(_create_statement(name, template))
        return self.url(name)

    def recreate_database(self, name: str, *, template: str) -> None:
        """Drop the database ``name`` (nobody may be connected) and create it again as a
        clone of ``template``, in one psql run."""
        self._psql(f'DROP DATABASE "{name}"', _create_statement(name, template))

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _psql(self, *statements: str) -> None:
        """Each statement in its own transaction (CREATE and DROP DATABASE need that)."""
        commands = [arg for sql in statements for arg in ("-c", sql)]
        self._run("psql", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres",
                  "-v", "ON_ERROR_STOP=1", "-q", *commands)

    def _run(self, binary: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / binary), *args]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{binary} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
        return result


def _create_statement(name: str, template: str | None) -> str:
    # The template must have no other connections: CREATE DATABASE waits up to 5 s for
    # the backends of connections just closed to exit, then fails.
    return f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")


def start_postgres() -> PostgresServer:
    """initdb + pg_ctl start on a free port; raise PostgresUnavailable when it cannot."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_user = None
    if os.geteuid() == 0:
        as_user = "postgres"
        try:
            subprocess.run(["id", "-u", as_user], check=True, capture_output=True)
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server") from exc
    root = Path(tempfile.mkdtemp(prefix="tollway-pg-"))
    if as_user:
        shutil.chown(root, user=as_user)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=_free_port(), as_user=as_user)
    try:
        server._run("initdb", "-D", str(server.data_dir), "-U", server.user, "--auth=trust",
                    "--encoding=UTF8", "--locale=C", "--no-sync")
        options = f"-p {server.port} -k {root} {_SERVER_OPTIONS}"
        server._run("pg_ctl", "-D", str(server.data_dir), "-l", str(root / "server.log"),
                    "-o", options, "-w", "-t", "30", "start")
    except BaseException:
        log = root / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        if detail:
            raise RuntimeError(f"PostgreSQL did not start; server log:\n{detail}") from None
        raise
    return server
