"""A private PostgreSQL 15 server for the e2e tests (Debian's postgresql-15), with
pg_stat_statements as the oracle: initdb in a temporary directory as the postgres user, trust
authentication on 127.0.0.1, a free port, no SSL (so `sslmode=prefer` is refused with `N`) unless
asked for (a self-signed certificate)."""
import collections
import os
import shutil
import subprocess
import tempfile

from loupe_e2e import fail, free_port, require_tools, wait_port

PG_BIN = "/usr/lib/postgresql/15/bin"
# The database the workloads use; the oracle's own statements run in `postgres` and are left out
# of both sides' counts by db_namespace / dbid.
BENCH_DB = "bench"
# Canonical verbs: whatever name loupe's summariser gives END/ABORT, both sides are compared
# through this map.
CANONICAL = {"END": "COMMIT", "ABORT": "ROLLBACK"}


def canonical(verb):
    return CANONICAL.get(verb, verb)


class PostgresServer:
    def __init__(self, *databases, ssl=False):
        require_tools(f"{PG_BIN}/initdb", f"{PG_BIN}/pg_ctl", "psql", "pgbench")
        self.work = tempfile.mkdtemp(prefix="loupe-pg-")
        os.chmod(self.work, 0o755)
        self.data = os.path.join(self.work, "data")
        self.port = free_port()
        shutil.chown(self.work, "postgres", "postgres")
        self._as_postgres(f"{PG_BIN}/initdb", "-D", self.data, "--auth=trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8")
        if ssl:  # a self-signed certificate: enough for sslmode=require
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=localhost", "-keyout", os.path.join(self.data, "server.key"),
                            "-out", os.path.join(self.data, "server.crt")],
                           check=True, capture_output=True, timeout=60)
            for name in ("server.key", "server.crt"):
                shutil.chown(os.path.join(self.data, name), "postgres", "postgres")
            os.chmod(os.path.join(self.data, "server.key"), 0o600)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.work}'\nssl = {'on' if ssl else 'off'}\n"
                    "fsync = off\n"
                    "synchronous_commit = off\nshared_preload_libraries = 'pg_stat_statements'\n"
                    "pg_stat_statements.track = top\npg_stat_statements.track_utility = on\n"
                    "max_connections = 40\n")
        self._as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.data, "-l",
                          os.path.join(self.work, "log"), "-w", "-t", "30", "start")
        wait_port(self.port)
        self.psql("CREATE EXTENSION pg_stat_statements", db="postgres")
        for db in (BENCH_DB, *databases):
            self.psql(f"CREATE DATABASE {db}", db="postgres")

    def _as_postgres(self, *argv):
        out = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                             text=True, timeout=60)
        if out.returncode != 0:
            fail(f"{argv[0]} failed: {out.stdout[-800:]}{out.stderr[-800:]}")

    def dsn(self, db=BENCH_DB, **extra):
        params = {"host": "127.0.0.1", "port": self.port, "user": "postgres", "dbname": db,
                  "sslmode": "prefer", **extra}
        return " ".join(f"{k}={v}" for k, v in params.items())

    def psql(self, sql, db=BENCH_DB, check=True):
        out = subprocess.run(["psql", "-X", "-At", "-v", f"ON_ERROR_STOP={int(check)}",
                              "-d", self.dsn(db), "-c", sql],
                             capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            fail(f"psql {sql!r}: {out.stderr[-500:]}")
        return out.stdout

    def reset_statements(self):
        self.psql("SELECT pg_stat_statements_reset()", db="postgres")

    def verb_calls(self, db=BENCH_DB):
        """Counter{verb: calls} of pg_stat_statements in database `db` (successful statements)."""
        out = self.psql(
            "SELECT upper(substring(s.query from '^\\s*([A-Za-z]+)')), sum(s.calls) "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            f"WHERE d.datname = '{db}' GROUP BY 1", db="postgres")
        calls = collections.Counter()
        for line in out.splitlines():
            verb, n = line.split("|")
            calls[canonical(verb)] += int(n)
        return +calls

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", self.data,
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=30)
        shutil.rmtree(self.work, ignore_errors=True)
