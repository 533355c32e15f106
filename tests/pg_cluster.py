"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, a temporary folder, a unix socket only.

``initdb`` refuses to run as root, so under root the cluster belongs to the ``postgres`` system user (Debian's
package creates it) and every server command runs through ``runuser``. The cluster listens on no TCP port:
tests running side by side on one machine cannot collide. Trust authentication and no fsync (it is disposable),
but commits stay synchronous: a test that crashes the server (``stop("immediate")``) finds every commit again.
A test run killed before its clean-up leaves its cluster behind: the next ``create`` stops and removes clusters
whose creating process is gone.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}
PREFIX = "prompter-pg-"
CREATOR_FILE = "creator.pid"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``, or the PATH's."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for bindir in candidates:
        if (Path(bindir) / "initdb").exists() and (Path(bindir) / "pg_ctl").exists():
            return Path(bindir)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class PostgresCluster:
    root: Path  # holds data/, the socket and the log
    bindir: Path
    owner: str | None  # the system user running the server when we are root, else None (ourselves)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @classmethod
    def create(cls, bindir: Path | None = None) -> PostgresCluster:
        """Initialise and start a new cluster in a fresh temporary folder."""
        bindir = bindir or find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found: run scripts/install_test_deps.sh")
        owner = "postgres" if os.geteuid() == 0 else None
        reap_orphans(bindir, owner)
        root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (root / CREATOR_FILE).write_text(str(os.getpid()))
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = cls(root=root, bindir=bindir, owner=owner)
        try:
            cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            with open(cluster.data / "postgresql.conf", "a") as conf:
                for key, value in {**SERVER_SETTINGS, "unix_socket_directories": f"'{root}'"}.items():
                    conf.write(f"{key} = {value}\n")
            cluster.start()
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{log}")
        return result

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends sessions cleanly; ``immediate`` is a crash (recovery on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) over the cluster's unix socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = sa.make_url(url).database
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def remove(self) -> None:
        """Stop the server (if it runs) and delete every file of the cluster."""
        try:
            if (self.data / "postmaster.pid").exists() and self.is_running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(bindir: Path, owner: str | None) -> list[Path]:
    """Stop and remove the clusters in the temporary folder whose creating process has exited."""
    reaped = []
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            creator = int((root / CREATOR_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if _alive(creator):
            continue
        PostgresCluster(root=root, bindir=bindir, owner=owner).remove()
        reaped.append(root)
    return reaped
