"""The Airflow test harness: one long-lived Airflow process for the whole test session, the sandbox it runs
against, and helpers to read back what a DAG run did.

Airflow runs in one long-lived subprocess (its settings are read once per process, from the environment) with a
metadata database of its own under a tmp AIRFLOW_HOME; the sandbox (mock 渝快办 + legacy REST) runs in the test
process on 127.0.0.1, and the DAGs' tasks reach it over HTTP. Retry delays in the test mappings are a second or two.
Test modules import the fixtures they use from here.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
SAMR = REPO / "mappings" / "cq-samr-rest.yaml"
BIN = Path(sys.executable).parent
LEGACY_TOKEN = "test-token"

# One long-lived Airflow process serves every test in this module: starting Airflow's in-process execution API
# costs about 8 s per process, so paying it once keeps the whole file inside CI time. It reads one JSON command
# per line on stdin ({"env": {...}, "op": "load" | "run", "dag_id": ...}) and answers one marked line on stdout.
RUNNER = r"""
import json, os, sys, traceback
MARK = "@@tongban-result@@ "
for line in sys.stdin:
    command = json.loads(line)
    os.environ.update(command["env"])
    try:
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if command["op"] == "load":
            out = {"dags": sorted(bag.dag_ids), "errors": {str(k): v for k, v in bag.import_errors.items()}, "tasks": {},
                   "pools": {d.dag_id: {t.task_id: t.pool for t in d.tasks} for d in bag.dags.values()}}
            for dag in bag.dags.values():
                out["tasks"][dag.dag_id] = {
                    "schedule": getattr(dag.timetable, "expression", None) or type(dag.timetable).__name__,
                    **{t.task_id: [t.retries, t.retry_delay.total_seconds(), t.retry_exponential_backoff,
                                   t.max_retry_delay.total_seconds() if t.max_retry_delay else None] for t in dag.tasks}}
        else:
            from datetime import timedelta
            from airflow.models.xcom import XComModel
            from airflow.utils.session import create_session
            dag = bag.get_dag(command["dag_id"])
            if command.get("retry_delay") is not None:  # the ops DAGs' production waits, shortened for the test
                for t in dag.tasks:
                    t.retry_delay = t.max_retry_delay = timedelta(seconds=command["retry_delay"])
            run = dag.test()
            with create_session() as session:
                tries = {ti.task_id: [ti.try_number, str(ti.state)] for ti in run.get_task_instances(session=session)}
                xcom = {x.task_id: XComModel.deserialize_value(x) for x in session.scalars(
                    XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, key="return_value"))}
            out = {"state": str(run.state), "tries": tries, "xcom": xcom}
    except Exception:
        out = {"crash": traceback.format_exc()}
    print(MARK + json.dumps(out), flush=True)
"""


class AirflowRunner:
    """The test side of RUNNER: send a command, wait for the marked answer (Airflow's own log lines are skipped)."""

    MARK = "@@tongban-result@@ "

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-c", RUNNER], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=str(log_path.parent))
        self.lines: queue.Queue = queue.Queue()
        self.tail: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def __call__(self, op: str, env: dict[str, str], dag_id: str | None = None, timeout: float = 120,
                 **options) -> dict:
        self.process.stdin.write(json.dumps({"op": op, "env": env, "dag_id": dag_id, **options}) + "\n")
        self.process.stdin.flush()
        seen: list[str] = []  # the command's own output: dag.test() writes the task logs here
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no answer from Airflow within {timeout} s; its last output:\n" + "".join(self.tail))
            if line is None:
                raise AssertionError("the Airflow process exited; its last output:\n" + "".join(self.tail))
            if line.startswith(self.MARK):
                result = json.loads(line[len(self.MARK):])
                assert "crash" not in result, result.get("crash")
                self.tail.clear()
                result["log"] = "".join(seen)
                return result
            seen.append(line)
            self.tail = (self.tail + [line])[-80:]

    def close(self):
        # Airflow's exit handlers take 10-60 s after stdin's end (the end of the session, counted against its last
        # test); nothing is left to save once the last answer came, so it is asked to stop, then killed.
        self.process.stdin.close()
        for stop in (self.process.terminate, self.process.kill):
            try:
                self.process.wait(timeout=3)
                break
            except subprocess.TimeoutExpired:
                stop()
        self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def airflow(tmp_path_factory):
    """An Airflow home with a migrated SQLite metadata database (about 3 s) and one warm Airflow process."""
    home = tmp_path_factory.mktemp("airflow")
    env = {**os.environ,
           "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "TONGBAN_BUS": "inprocess"}
    done = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    runner = AirflowRunner(env, home / "runner.log")
    yield runner
    runner.close()


def _samr_mapping(directory: Path, *, system: str = "cq-samr-rest", attempts: int = 3, page_size: int = 200) -> Path:
    """A copy of the real cq-samr-rest mapping with test-sized retries: Airflow waits 1 s, then 2 s; the REST
    adapter tries once per call, so a legacy outage reaches Airflow instead of being absorbed inside the task."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "tables").exists():
        shutil.copytree(REPO / "mappings" / "tables", directory / "tables")
    text = SAMR.read_text(encoding="utf-8")
    text, n_system = re.subn(r"(?m)^system: .*$", f"system: {system}", text)
    text, n_retries = re.subn(r"(?m)^retries: .*$",
                              f"retries: {{attempts: {attempts}, delay_seconds: 1, max_delay_seconds: 2}}", text)
    text, n_retry = re.subn(r"(?m)^  retry: .*$", "  retry: {attempts: 1, initial_wait: 0.1, max_wait: 0.2}", text)
    text, n_size = re.subn(r"size: 200}", f"size: {page_size}}}", text)
    assert (n_system, n_retries, n_retry, n_size) == (1, 1, 1, 1), "cq-samr-rest.yaml changed shape; update this test"
    path = directory / f"{system}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class LegacyOutage:
    """ASGI wrapper around the legacy REST sandbox: from page `from_page` on, answer 503 — a legacy system that
    dies in the middle of a run, after the first pages were already read and published."""

    def __init__(self, app):
        self.app, self.from_page = app, None

    async def __call__(self, scope, receive, send):
        if self.from_page and scope["type"] == "http" and scope["path"] == "/api/cases":
            page = int(parse_qs(scope["query_string"].decode()).get("page", ["1"])[0])
            if page >= self.from_page:
                from starlette.responses import JSONResponse

                await JSONResponse({"code": 503, "message": "legacy system down"}, status_code=503)(scope, receive, send)
                return
        await self.app(scope, receive, send)


@pytest.fixture
def world(tmp_path, airflow):
    """The sandbox on 127.0.0.1 (mock 渝快办 + legacy REST, 140 cases) and the environment that points the DAGs'
    tasks at it, at a tmp tongban home and at a tmp mappings directory."""
    from sandbox.legacy_rest import create_app as legacy_app
    from sandbox.legacy_world import LegacyWorld
    from sandbox.platform import create_app as platform_app
    from sandbox.runner import Server

    legacy_world = LegacyWorld(seed=5, cases=140, bad_share=0.1)
    outage = LegacyOutage(legacy_app(legacy_world, token=LEGACY_TOKEN))
    platform = Server(platform_app(str(tmp_path / "platform.db")), name="platform").start()
    legacy = Server(outage, name="legacy").start()
    from tests.schema_at_head import home_at_head

    home = tmp_path / "home"
    home.mkdir()
    home_at_head(home)  # as after `tongban sandbox up`: the operator's CLI commands find the schema at head
    mappings = tmp_path / "mappings"
    _samr_mapping(mappings)
    env = {"TONGBAN_HOME": str(home), "TONGBAN_MAPPINGS": str(mappings), "TONGBAN_BUS": "inprocess",
           "TONGBAN_PLATFORM_URL": platform.url, "CQ_SAMR_URL": legacy.url, "CQ_SAMR_TOKEN": LEGACY_TOKEN,
           "TONGBAN_DB_URL": f"sqlite:///{home}/tongban.db"}
    yield SimpleNamespace(env=env, world=legacy_world, outage=outage, legacy_url=legacy.url, mappings=mappings,
                          run=lambda dag_id, **options: airflow("run", env, dag_id, **options))
    platform.stop()
    legacy.stop()


def _settings(env):
    from tongban.settings import Settings

    return Settings(home=Path(env["TONGBAN_HOME"]), db_url_override=env["TONGBAN_DB_URL"], bus="inprocess",
                    platform_url=env["TONGBAN_PLATFORM_URL"])


def _store(env):
    from tongban.store import open_store

    return open_store(env["TONGBAN_DB_URL"])


def _deliver(env) -> object:
    """The bus worker's job (not Airflow's): drain the local queue to the platform."""
    from tongban.bus.local import LocalBus
    from tongban.delivery.worker import DeliveryWorker
    from tongban.platform.client import PlatformClient

    store = _store(env)
    platform = PlatformClient(_settings(env))
    stats = DeliveryWorker(store=store, bus=LocalBus(store), platform=platform).run(stop=threading.Event(),
                                                                                   idle_exit=0.8)
    return stats, platform


def _watermark(env, system="cq-samr-rest"):
    from tongban.store import state

    with _store(env).read() as conn:
        return state.get_watermark(conn, system)


def _published_keys(env) -> list[str]:
    from tongban.store.tables import ledger

    with _store(env).read() as conn:
        return list(conn.execute(select(ledger.c.idempotency_key).where(ledger.c.hop == "published")).scalars())


def _valid_cases(world) -> int:
    bad = world.bad_cases()
    return sum(1 for k in world.keys() if world.record(k) is not None and k not in bad)


# ------------------------------------------------------------------------------------------ loading
