"""The SQL benchmark loads of sql_overhead.py and sql_cost.py: a private server (the e2e tests'
PostgreSQL 15 or MariaDB 10.11, run under its real name), one long run of its read-only point
select benchmark (`pgbench -S`, `sysbench oltp_point_select`), and the server's own count of the
statements it ran, read over its Unix socket (not TCP, and one session kept open: a new
connection a reading would cost the server a fork or a thread in the measured phase)."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from postgres_server import BENCH_DB, PostgresServer  # noqa: E402
from test_mariadb import MariaDB  # noqa: E402


class _Session:
    """A command-line client kept open on stdin/stdout: one query, one line of answer."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def line(self, sql):
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out:
            raise RuntimeError(f"{self.proc.args[0]} ended before answering {sql!r}")
        return out.strip()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class _Load:
    """What both loads share: the benchmark process (`bench`), the counting session and the
    server, stopped in that order."""
    bench = session = server = None

    def running(self):
        return self.bench is not None and self.bench.poll() is None

    def stop(self):
        if self.bench and self.bench.poll() is None:
            self.bench.terminate()
            self.bench.wait()
        if self.session:
            self.session.close()
        if self.server:
            self.server.stop()


class PostgresLoad(_Load):
    """`pgbench -S` (one SELECT a transaction, -M simple unless `mode`) against PostgreSQL 15;
    operations: pg_stat_statements calls in the benchmark's database (counted as each statement
    ends, where pg_stat_database's xact_commit is flushed only every second or so)."""

    system, server_comm, client_comm, unit = "postgresql", "postgres", "pgbench", "SELECT"

    def __init__(self, clients, scale=1, mode="simple"):
        self.clients, self.mode = clients, mode
        self.server = PostgresServer()
        self.bench = self.session = None
        try:
            subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), *self._connection()],
                           check=True, capture_output=True, timeout=300)
            self.session = _Session(["psql", "-X", "-At", "-q", "-h", self.server.work, "-p",
                                     str(self.server.port), "-U", "postgres", "-d", "postgres"])
        except BaseException:
            self.stop()
            raise

    def _connection(self):
        return ["-h", "127.0.0.1", "-p", str(self.server.port), "-U", "postgres", BENCH_DB]

    def start(self, seconds):
        self.bench = subprocess.Popen(
            ["pgbench", "-S", "-M", self.mode, "-c", str(self.clients), "-j", str(self.clients),
             "-T", str(int(seconds)), *self._connection()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


    def operations(self):
        return int(self.session.line(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d "
            f"ON d.oid = s.dbid WHERE d.datname = '{BENCH_DB}';"))


class MariaDBLoad(_Load):
    """`sysbench oltp_point_select` (one SELECT an event, prepared unless `mode` is "disable")
    against MariaDB 10.11 run as `mariadbd`; operations: Com_select (a prepared SELECT counts
    there as well as in Com_stmt_execute)."""

    system, server_comm, client_comm, unit = "mariadb", "mariadbd", "sysbench", "SELECT"

    def __init__(self, clients, table_size=10000, mode="auto"):
        self.clients, self.mode, self.table_size = clients, mode, table_size
        self.server = MariaDB(binary=shutil.which("mariadbd") or "/usr/sbin/mariadbd")
        self.bench = self.session = None
        try:
            subprocess.run(self._sysbench("prepare"),
                           check=True, capture_output=True, timeout=300)
            self.session = _Session(["mariadb", "--no-defaults", "-S", self.server.socket, "-uroot",
                                     "-N", "-B", "--unbuffered"])
        except BaseException:
            self.stop()
            raise

    def _sysbench(self, *args):
        return ["sysbench", "oltp_point_select", "--db-driver=mysql", "--mysql-host=127.0.0.1",
                f"--mysql-port={self.server.port}", "--mysql-user=loupe", "--mysql-password=pw",
                "--mysql-db=sbtest", "--tables=1", f"--table-size={self.table_size}", *args]

    def start(self, seconds):
        self.bench = subprocess.Popen(
            self._sysbench(f"--threads={self.clients}", f"--time={int(seconds)}",
                           f"--db-ps-mode={self.mode}", "run"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


    def operations(self):
        name, value = self.session.line("SHOW GLOBAL STATUS LIKE 'Com_select';").split("\t")
        return int(value)


LOADS = {"postgresql": PostgresLoad, "mariadb": MariaDBLoad}
