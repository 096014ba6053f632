"""Real Airflow processes for the `scheduler` and `celery` tests and benchmarks/airflow.py: a PostgreSQL database of
their own for the metadata (created, dropped after), the whole sandbox on free ports, the mapping files with a
one-minute schedule, and Airflow started through the project's own scripts (scripts/airflow-standalone,
scripts/airflow-node) in process groups that are always killed afterwards.

What a run did is read back from Airflow's metadata tables (dag_run, task_instance, task_instance_history) and
from the tongban store (a PostgreSQL schema of its own), never from logs.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa

from tests.support import PG_BASE, scratch_pg_schema

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_ADMIN = PG_BASE  # the shared test database (TONGBAN_TEST_PG)
SYSTEMS = ("cq-samr-rest", "cq-hrss-soap", "cq-wsjkw-files")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_url(database: str) -> str:
    return sa.engine.make_url(PG_ADMIN).set(database=database).render_as_string(hide_password=False)


@contextlib.contextmanager
def pg_database(prefix: str = "tongban_airflow"):
    """A PostgreSQL database of one's own (Airflow's metadata), dropped afterwards whatever happened."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def pg_schema():
    """The tongban store in a schema of its own on the shared test database, dropped afterwards."""
    # A process that outlived its kill may still hold a transaction on the schema: the drop waits for its locks a
    # while, then leaves the schema behind (harmless on the scratch database) rather than hang the whole suite.
    with scratch_pg_schema(give_up_after="30s") as url:
        # Every table exists before the workers start (the migrations, as `tongban db upgrade` in production): tasks
        # that start together must not race to create them.
        from tongban.store.schema import upgrade

        upgrade(url)
        yield url


def worker_hostname() -> str:
    """`[core] hostname_callable` for the Celery test: two workers on one machine, told apart in task_instance."""
    return os.environ.get("AIRFLOW_TEST_WORKER_NAME") or socket.getfqdn()


def write_mappings(directory: Path, *, schedule: str | None = "* * * * *", attempts: int = 3, timeout: int | None = None) -> Path:
    """Copies of the sandbox's three mapping files: every minute, retries 1 s then 2 s, and one try per legacy call
    (so that a legacy outage reaches Airflow instead of being absorbed inside the task)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "mappings" / "tables", directory / "tables", dirs_exist_ok=True)
    for system in SYSTEMS:
        text = (REPO / "mappings" / f"{system}.yaml").read_text(encoding="utf-8")
        text, n_schedule = re.subn(r"(?m)^schedule: .*$", f'schedule: "{schedule}"' if schedule else "schedule: null",
                                   text)
        text, n_retries = re.subn(r"(?m)^retries: .*$",
                                  f"retries: {{attempts: {attempts}, delay_seconds: 1, max_delay_seconds: 2}}", text)
        text = re.sub(r"(?m)^  retry: .*$", "  retry: {attempts: 1, initial_wait: 0.1, max_wait: 0.2}", text)
        if timeout is not None:
            text = re.sub(r"(?m)^  timeout: .*$", f"  timeout: {timeout}", text)
        assert (n_schedule, n_retries) == (1, 1), f"{system}.yaml changed shape; update tests/airflow_cluster.py"
        (directory / f"{system}.yaml").write_text(text, encoding="utf-8")
    return directory


@contextlib.contextmanager
def sandbox(home: Path, cases: int = 40):
    """The whole sandbox (mock 渝快办, REST, SOAP, file drop) on five consecutive free ports."""
    from sandbox.environment import Sandbox

    saved = dict(os.environ)  # Sandbox.start exports its variables into this process: keep the test's own
    last = None
    for _ in range(20):
        base = free_port()
        if base > 65000:
            continue
        try:
            box = Sandbox(home, cases=cases, seed=7, port_base=base).start()
            break
        except OSError as exc:
            last = exc
    else:
        raise AssertionError(f"no five free ports in a row for the sandbox: {last}")
    env = box.environment()
    os.environ.clear()
    os.environ.update(saved)
    try:
        yield SimpleNamespace(box=box, env=env)
    finally:
        box.stop()


class Processes:
    """Processes started in process groups of their own; `stop()` ends each group and every descendant."""

    def __init__(self, logs: Path):
        self.logs, self.started, self.killed = logs, [], set()
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen(argv, env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append((name, process, log))
        return process

    def kill_tree(self, process: subprocess.Popen, sig=signal.SIGKILL) -> None:
        import psutil

        self.killed.add(process.pid)  # meant to end: wait_for does not report it
        try:
            family = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        for child in family:  # a task process may have left the group (setsid)
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(sig)

    def stop(self) -> None:
        for _, process, _ in reversed(self.started):
            if process.poll() is None:
                self.kill_tree(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process, _ in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for _, process, log in self.started:
            self.kill_tree(process, signal.SIGKILL)  # whatever lingers (idle executor workers)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            log.close()

    def tail(self, lines: int = 40) -> str:
        out = []
        for name, _, log in self.started:
            log.flush()
            text = (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace").splitlines()
            out.append(f"--- {name}.log\n" + "\n".join(text[-lines:]))
        return "\n".join(out)


def airflow_env(tmp: Path, metadata_url: str, store_url: str, sandbox_env: dict[str, str], mappings: Path,
                **extra: str) -> dict[str, str]:
    """The environment scripts/airflow-env.sh completes: ports of our own (API, log servers), our database, our
    store, our sandbox. Paused-at-creation stays the default: the test unpauses the ingest DAGs, as an operator."""
    port = free_port()
    env = {**os.environ, **sandbox_env,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW_PORT": str(port),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url,  # as scripts/airflow-env.sh sets it
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
           "AIRFLOW__API__WORKERS": "1",
           "AIRFLOW__CORE__PARALLELISM": "8",
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
           "TONGBAN_HOME": sandbox_env["TONGBAN_HOME"], "TONGBAN_MAPPINGS": str(mappings),
           "TONGBAN_DB_URL": store_url, "TONGBAN_BUS": "inprocess",
           **extra}
    return env


class Metadata:
    """Airflow's metadata tables, read directly (what the UI shows)."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(url)

    def rows(self, sql: str, **params) -> list[dict]:
        try:
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
        except sa.exc.ProgrammingError:
            return []  # the tables are not there yet

    def dags(self) -> dict[str, bool]:
        return {r["dag_id"]: r["is_paused"] for r in self.rows("SELECT dag_id, is_paused FROM dag")}

    def runs(self, dag_id: str) -> list[dict]:
        return self.rows("SELECT run_id, run_type, state FROM dag_run WHERE dag_id = :d ORDER BY logical_date, id",
                         d=dag_id)

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        """Every try of one task of one run, first first: the earlier ones from task_instance_history."""
        earlier = self.rows("SELECT try_number, state, hostname, pool FROM task_instance_history WHERE dag_id = :d "
                            "AND run_id = :r AND task_id = :t ORDER BY try_number", d=dag_id, r=run_id, t=task_id)
        now = self.rows("SELECT try_number, state, hostname, pool FROM task_instance WHERE dag_id = :d "
                        "AND run_id = :r AND task_id = :t", d=dag_id, r=run_id, t=task_id)
        return earlier + now

    def pools(self) -> dict[str, int]:
        return {r["pool"]: r["slots"] for r in self.rows("SELECT pool, slots FROM slot_pool")}

    def dispose(self) -> None:
        self.engine.dispose()


def wait_for(what: str, check, timeout: float, processes: Processes, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{processes.tail()}")
        for name, process, _ in processes.started:
            if process.poll() is not None and process.pid not in processes.killed:
                raise AssertionError(f"{name} exited ({process.returncode}) while waiting for {what}\n{processes.tail()}")
        time.sleep(every)


def api_ready(env: dict[str, str]) -> bool:
    """The API server answers (tasks report to its execution API: a task started before it is up fails)."""
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{env['AIRFLOW_PORT']}/api/v2/monitor/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def airflow_cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=str(REPO))
    assert done.returncode == 0, f"airflow {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def deliver(env: dict[str, str]):
    """The bus worker's job (not Airflow's): drain the local queue to the platform; (stats, platform client)."""
    from tongban.bus.local import LocalBus
    from tongban.delivery.worker import DeliveryWorker
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings
    from tongban.store import open_store

    store = open_store(env["TONGBAN_DB_URL"])
    platform = PlatformClient(Settings(home=Path(env["TONGBAN_HOME"]), db_url_override=env["TONGBAN_DB_URL"],
                                       bus="inprocess", platform_url=env["TONGBAN_PLATFORM_URL"]))
    stats = DeliveryWorker(store=store, bus=LocalBus(store), platform=platform).run(stop=threading.Event(),
                                                                                   idle_exit=1.0)
    return stats, platform


def ledger_keys(store_url: str, hop: str) -> list[str]:
    from sqlalchemy import select

    from tongban.store import open_store
    from tongban.store.tables import ledger

    with open_store(store_url).read() as conn:
        return list(conn.execute(select(ledger.c.idempotency_key).where(ledger.c.hop == hop)).scalars())


class CeleryCluster:
    """Airflow on CeleryExecutor as docs/airflow.md's several-machines recipe runs it (scripts/airflow-node):
    `prepare`, then the API server, the scheduler, the DAG processor and N Celery workers, each its own process
    group. RabbitMQ (a vhost of its own) is the broker; PostgreSQL the metadata database and the result backend."""

    def __init__(self, tmp: Path, env: dict[str, str], processes: Processes):
        self.tmp, self.env, self.processes, self.workers = tmp, env, processes, {}

    @staticmethod
    def settings(metadata_url: str, broker_url: str) -> dict[str, str]:
        return {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
                # one task at a time per worker, none held back behind a long one (acks late: a killed worker's
                # task goes back to the queue)
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                # a worker that vanished is noticed within seconds (default: 5 minutes)
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.airflow_cluster.worker_hostname",
                "PYTHONPATH": str(REPO)}

    def node(self, role: str, *args: str) -> list[str]:
        return [str(REPO / "scripts" / "airflow-node"), role, "--sandbox", *args]

    def start(self, workers: int) -> None:
        done = subprocess.run(self.node("prepare"), env=self.env, capture_output=True, text=True, timeout=300,
                              cwd=str(REPO))
        assert done.returncode == 0, done.stderr[-3000:]
        for role in ("api-server", "scheduler", "dag-processor"):
            self.processes.start(role, self.node(role), self.env)
        for n in range(1, workers + 1):
            self.add_worker(f"w{n}")

    def add_worker(self, name: str) -> subprocess.Popen:
        env = {**self.env, "AIRFLOW_TEST_WORKER_NAME": name,
               "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}  # one log server per worker
        process = self.processes.start(f"worker-{name}", self.node("worker", "--celery-hostname", f"{name}@%h"), env)
        self.workers[name] = process
        return process
