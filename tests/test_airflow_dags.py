"""Airflow schedules and retries every ingest: the DAG factory, the operations DAGs, and real `dag.test()` runs.

Airflow runs in one long-lived subprocess (its settings are read once per process, from the environment) with a metadata
database of its own under a tmp AIRFLOW_HOME; the sandbox (mock 渝快办 + legacy REST) runs in this process on
127.0.0.1, and the DAGs' tasks reach it over HTTP. Retry delays in the test mappings are a second or two.
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

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from tongban.store.at_rest import reveal

pytestmark = pytest.mark.airflow

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
            out = {"dags": sorted(bag.dag_ids), "errors": {str(k): v for k, v in bag.import_errors.items()}, "tasks": {}}
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
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
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
    home = tmp_path / "home"
    home.mkdir()
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
    from tongban.platform_client import PlatformClient

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
def test_every_dag_loads_with_the_schedule_and_retries_its_mapping_file_declares(airflow):
    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(REPO / "mappings")})
    assert loaded["errors"] == {}
    for path in sorted((REPO / "mappings").glob("*.yaml")):
        assert f"ingest__{yaml.safe_load(path.read_text(encoding='utf-8'))['system']}" in loaded["dags"]
    assert {"ops__replay", "ops__reconcile"} <= set(loaded["dags"])
    samr = loaded["tasks"]["ingest__cq-samr-rest"]
    assert samr["schedule"] == "*/15 * * * *"
    # mappings/cq-samr-rest.yaml: retries: {attempts: 3, delay_seconds: 60, max_delay_seconds: 900}
    assert samr["ingest"] == [2, 60.0, 2.0, 900.0]
    assert samr["check_mapping"][0] == 0  # a broken file is not retried


def test_a_broken_mapping_file_is_one_named_import_error_and_a_new_file_is_a_new_dag(airflow, tmp_path):
    mappings = tmp_path / "mappings"
    _samr_mapping(mappings)
    _samr_mapping(mappings, system="cq-newcomer-rest")  # a department onboarding: one file, no code
    broken = _samr_mapping(mappings, system="cq-broken-rest")
    text = broken.read_text(encoding="utf-8").replace('schedule: "*/15 * * * *"', 'schedule: "every quarter hour"')
    broken.write_text(text, encoding="utf-8")
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith("schedule:"))

    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(mappings)})

    assert {"ingest__cq-samr-rest", "ingest__cq-newcomer-rest", "ops__replay", "ops__reconcile"} <= set(loaded["dags"])
    assert "ingest__cq-broken-rest" not in loaded["dags"]
    assert len(loaded["errors"]) == 1
    (where, message), = loaded["errors"].items()
    assert where.endswith("tongban_mapping_errors.py")
    assert f"{broken}:{line}: schedule 'every quarter hour' is not a cron expression" in message
    assert "cq-samr-rest.yaml" not in message and "cq-newcomer-rest.yaml" not in message
    assert loaded["tasks"]["ingest__cq-newcomer-rest"]["ingest"] == [2, 1.0, 2.0, 2.0]


# ------------------------------------------------------------------------------------------ runs
def test_the_legacy_system_fails_the_first_attempts_and_airflow_retry_delivers(world):
    # The first two fetches answer 503; the REST adapter gives up at once, so only Airflow's third try succeeds.
    httpx.post(f"{world.legacy_url}/_sandbox/faults", json={"fail_next": 2, "status": 503}).raise_for_status()

    run = world.run("ingest__cq-samr-rest")

    assert run["state"] == "success"
    assert run["tries"]["ingest"] == [3, "success"]
    assert run["tries"]["report"][1] == "success"
    assert _watermark(world.env) is not None
    stats, platform = _deliver(world.env)
    assert platform.get("/api/v1/stats")["cases"] == _valid_cases(world.world) > 0
    assert stats.duplicates == 0


def test_a_run_that_fails_for_good_leaves_nothing_half_done_and_the_next_run_delivers_once(world):
    world.world.advance(10)  # every case exists and has progressed: about 630 events in all
    _samr_mapping(world.mappings, page_size=130)  # page 1 alone holds more than one publish chunk (500 events)
    world.outage.from_page = 2  # … so a chunk is published before page 2 answers 503, on every try

    failed = world.run("ingest__cq-samr-rest")

    assert failed["state"] == "failed"
    assert failed["tries"]["ingest"] == [3, "failed"]  # every attempt the mapping file allows
    assert _watermark(world.env) is None  # the watermark has not moved
    assert _published_keys(world.env), "the outage should come after the first chunk was published"

    world.outage.from_page = None
    later = world.run("ingest__cq-samr-rest")
    assert later["state"] == "success"
    assert _watermark(world.env) is not None
    stats, platform = _deliver(world.env)

    published = _published_keys(world.env)
    assert len(published) == len(set(published))  # nothing published twice across the failed and the later run
    platform_stats = platform.get("/api/v1/stats")
    assert platform_stats["cases"] == _valid_cases(world.world)
    assert platform_stats["events"] == len(published) == stats.delivered  # each event delivered exactly once

    # ops__reconcile agrees: a receipt for every delivery, equal case counts per item code.
    assert world.run("ops__reconcile")["state"] == "success"


def test_reconcile_names_the_gap_and_its_dag_fails_when_the_platform_lacks_a_case(world):
    from tongban.platform_client import PlatformClient
    from tongban.reconcile import reconcile
    from tongban.store.tables import case_numbers, deliveries

    assert world.run("ingest__cq-samr-rest")["state"] == "success"
    _deliver(world.env)
    store, platform = _store(world.env), PlatformClient(_settings(world.env))
    assert reconcile(store, platform).gaps == []
    # The ledger says one more case of an item was delivered than the platform holds (the platform lost it).
    with store.write() as conn:
        item = conn.execute(select(case_numbers.c.item_code).limit(1)).scalar()
        conn.execute(case_numbers.insert().values(system="cq-samr-rest", source_key="GHOST", case_number="GHOST-1",
                                                  item_code=item, assigned_at="2026-01-01T00:00:00Z"))
        conn.execute(deliveries.insert().values(idempotency_key="ghost", message_id="m-ghost", case_number="GHOST-1",
                                                sequence=1, receipt="{}", delivered_at="2026-01-01T00:00:00Z"))
    gaps = reconcile(store, platform).gaps
    assert any(g.startswith(f"item {item}: ledger has") and "the platform holds" in g for g in gaps)

    assert world.run("ops__reconcile")["state"] == "failed"


def test_ops_replay_replays_only_the_entries_an_operator_marked(world):
    from tongban.replay_marks import mark_for_replay, pending
    from tongban.store.tables import ledger, quarantine

    world.world.advance(10)
    assert world.run("ingest__cq-samr-rest")["state"] == "success"
    store = _store(world.env)
    with store.read() as conn:
        ids = list(conn.execute(select(quarantine.c.id).where(quarantine.c.status == "open")
                                .order_by(quarantine.c.id)).scalars())
    assert len(ids) >= 2, "the sandbox world seeds bad records"
    with pytest.raises(ValueError, match="999999"):
        mark_for_replay(store, "quarantine", [999999])
    assert mark_for_replay(store, "quarantine", [ids[0]], by="operator") == 1

    assert world.run("ops__replay")["state"] == "success"

    with store.read() as conn:
        status = dict(conn.execute(select(quarantine.c.id, quarantine.c.status)
                                   .where(quarantine.c.id.in_(ids[:2]))).all())
        replayed = conn.execute(select(func.count()).select_from(ledger).where(ledger.c.hop == "replayed")).scalar()
    assert status == {ids[0]: "replayed", ids[1]: "open"}  # the unmarked entry is untouched
    assert replayed == 1
    assert pending(store, "quarantine") == []


def test_every_ingest_dag_of_the_repository_runs_against_the_full_sandbox(airflow, tmp_path, monkeypatch):
    """The real mapping files, unchanged, against the sandbox's REST, SOAP and file-drop departments."""
    from sandbox.environment import Sandbox
    from tongban.store.tables import ledger

    exported = ["TONGBAN_PLATFORM_URL", "CQ_SAMR_URL", "CQ_SAMR_TOKEN", "CQ_HRSS_WSDL", "CQ_HRSS_USER",
                "CQ_HRSS_PASSWORD", "CQ_WSJKW_DROP"]
    for name in exported:  # Sandbox.start() exports these into os.environ; monkeypatch puts them back afterwards
        monkeypatch.delenv(name, raising=False)
    sandbox = Sandbox(tmp_path / "sandbox", cases=40).start()
    try:
        home = tmp_path / "home"
        env = {"TONGBAN_HOME": str(home), "TONGBAN_MAPPINGS": str(REPO / "mappings"), "TONGBAN_BUS": "inprocess",
               "TONGBAN_DB_URL": f"sqlite:///{home}/tongban.db", **{name: os.environ[name] for name in exported}}
        systems = [yaml.safe_load(path.read_text(encoding="utf-8"))["system"]
                   for path in sorted((REPO / "mappings").glob("*.yaml"))]
        for system in systems:
            run = airflow("run", env, f"ingest__{system}")
            assert run["state"] == "success", (system, run)
        stats, platform = _deliver(env)
        with _store(env).read() as conn:
            published_by_system = dict(conn.execute(select(ledger.c.system, func.count())
                                                    .where(ledger.c.hop == "published").group_by(ledger.c.system)).all())
        assert set(published_by_system) == set(systems)
        assert stats.delivered == sum(published_by_system.values())
        assert airflow("run", env, "ops__reconcile")["state"] == "success"
    finally:
        sandbox.stop()


def test_a_marked_parked_delivery_is_republished_once_and_the_mark_closes(tmp_path):
    """replay_marks without Airflow: the parked entry stays open (holding its case back) until the replay runs."""
    from tongban import quarantine as q
    from tongban.bus.local import LocalBus
    from tongban.bus.topology import CASES
    from tongban.envelope import KIND_CASE_EVENT, Envelope
    from tongban.replay_marks import mark_for_replay, pending, replay_marked
    from tongban.store import Store
    from tongban.store.tables import parked

    store = Store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    bus.declare(CASES)
    env = Envelope(kind=KIND_CASE_EVENT, source="cq-samr-rest", idempotency_key="k1", correlation="N1",
                   payload={"event": "application", "sequence": 1, "source_key": "YW1"})
    with store.write() as conn:
        first = q.park(conn, message_id=env.message_id, idempotency_key="k1", system="cq-samr-rest", case_number="N1",
                       reason="gave up after 8 attempts", envelope_json=env.to_bytes().decode())
        second = q.park(conn, message_id="m2", idempotency_key="k2", system="cq-samr-rest", case_number="N2",
                        reason="gave up after 8 attempts", envelope_json=env.to_bytes().decode())

    assert mark_for_replay(store, "parked", [first]) == 1
    assert mark_for_replay(store, "parked", [first]) == 0  # marking twice is harmless
    with store.read() as conn:  # still open: later events of case N1 keep waiting behind it
        assert q.is_blocked(conn, "N1", None, None)
    assert pending(store, "parked") == [first]

    result = replay_marked(store, bus)

    assert result.parked_ids == [first]
    assert bus.depth(CASES.queue) == 1
    with store.read() as conn:
        assert dict(conn.execute(select(parked.c.id, parked.c.status)).all()) == {first: "replayed", second: "open"}
    assert pending(store, "parked") == []
    assert replay_marked(store, bus).messages == ["nothing marked for replay"]
    with pytest.raises(ValueError, match="not found or not open"):
        mark_for_replay(store, "parked", [first])
    store.dispose()


# ------------------------------------------------------------------------------------------ flowback and chores
FLOWBACK_SOURCES = REPO / "mappings" / "flowback" / "sources"


def test_each_flowback_source_file_is_a_dag_on_its_schedule_and_the_chores_are_scheduled(airflow):
    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(REPO / "mappings")})
    assert loaded["errors"] == {}
    for path in sorted(FLOWBACK_SOURCES.glob("*.yaml")):
        source = yaml.safe_load(path.read_text(encoding="utf-8"))
        dag = loaded["tasks"][f"flowback__{source['source']}"]
        assert dag["schedule"] == source["schedule"].replace("@hourly", "0 * * * *")
        assert dag["flowback"][0] == 2  # a ministry service that is away gets two more tries
    catalog, identity = loaded["tasks"]["ops__catalog_sync"], loaded["tasks"]["ops__identity_retry"]
    assert catalog["schedule"] == "0 0 * * *" and catalog["catalog_sync"][:2] == [2, 30.0]
    assert identity["schedule"] == "0 * * * *" and identity["identity_retry"][0] == 3


def test_a_broken_flowback_source_file_is_named_and_the_other_dags_load(airflow, tmp_path):
    mappings = tmp_path / "mappings"
    _samr_mapping(mappings)
    shutil.copytree(REPO / "mappings" / "flowback", mappings / "flowback")
    broken = mappings / "flowback" / "sources" / "mps-broken.yaml"
    broken.write_text("source: mps-broken\nschedule: \"@hourly\"\ntransport:\n  kind: ftp\n  url: x\n",
                      encoding="utf-8")

    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(mappings)})

    assert {"flowback__mps-flowback-files", "flowback__mps-flowback-soap", "ingest__cq-samr-rest",
            "ops__catalog_sync"} <= set(loaded["dags"])
    assert "flowback__mps-broken" not in loaded["dags"]
    (where, message), = loaded["errors"].items()
    assert where.endswith("tongban_mapping_errors.py")
    assert f"{broken}:3: transport: Input tag 'ftp'" in message  # file, line of `transport:`, the rule
    assert "mps-files.yaml" not in message and "cq-samr-rest.yaml" not in message


@pytest.fixture
def ministry(tmp_path, airflow):
    """The repository's file-drop ministry source, unchanged, pointed at a tmp TONGBAN_HOME (its drop folder and
    the counties' file sinks live there) and at the sandbox district sinks (TONGBAN_DISTRICT_GATEWAY)."""
    from sandbox.district_sinks import DistrictSinkWorld

    home = tmp_path / "home"
    # mappings/flowback/district-sinks.yaml drops the counties' records in ${TONGBAN_HOME}/flowback-drop/<code>.
    sinks = DistrictSinkWorld(home / "flowback-drop").start()
    env = {"TONGBAN_HOME": str(home), "TONGBAN_MAPPINGS": str(REPO / "mappings"), "TONGBAN_BUS": "inprocess",
           "TONGBAN_DB_URL": f"sqlite:///{home}/tongban.db", "TONGBAN_DISTRICT_GATEWAY": sinks.server.url}
    yield SimpleNamespace(env=env, sinks=sinks, incoming=home / "ministry-drop" / "incoming",
                          run=lambda: airflow("run", env, "flowback__mps-flowback-files"))
    sinks.stop()


def test_the_file_drop_flowback_dag_routes_ministry_batches_to_the_district_sinks_and_balances(ministry):
    from sandbox.ministry import make_batch, write_batch

    batches = [make_batch("MPS-20260301-0001", 180, seed=7), make_batch("MPS-20260301-0002", 120, seed=8)]
    write_batch(ministry.incoming, batches[0], "xml")
    write_batch(ministry.incoming, batches[1], "csv")

    run = ministry.run()

    assert run["state"] == "success"
    report = run["xcom"]["flowback"]
    assert report["balanced"] and report["source"] == "mps-flowback-files"
    assert {r["batch_id"]: r["records_in"] for r in report["reconciliations"]} == {
        "MPS-20260301-0001": 180, "MPS-20260301-0002": 120}
    received = ministry.sinks.received_by_rowguid()  # REST districts, the city, and the counties' file drops
    for batch in batches:
        for guid, expected in batch.expected.items():
            assert received.get(guid) == (None if expected.startswith("quarantine:") else expected), guid
    assert report["delivery"]["delivered"] == len(received)
    # The next run finds nothing new and still balances.
    again = ministry.run()
    assert again["state"] == "success" and again["xcom"]["flowback"]["batches"] == []


def test_a_batch_that_does_not_match_its_manifest_fails_the_flowback_dag_at_once(ministry):
    from sandbox.ministry import make_batch, write_batch

    write_batch(ministry.incoming, make_batch("MPS-20260302-0001", 40, seed=9), "csv")
    manifest = ministry.incoming / "MPS-20260302-0001.manifest.json"
    claimed = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps({**claimed, "record_count": claimed["record_count"] + 1}), encoding="utf-8")

    run = ministry.run()

    assert run["state"] == "failed"
    # No retry: the batch is already routed, a second try would find nothing and pass.
    assert run["tries"]["flowback"] == [1, "failed"]
    assert "flowback mps-flowback-files does not balance" in run["log"]
    assert "batch MPS-20260302-0001: records in 40 ≠ manifest count 41" in run["log"]


def test_catalog_sync_passes_on_the_default_catalogue_and_fails_once_an_item_of_a_mapping_table_retires(world):
    from collections import Counter

    from tongban.catalog import current, waiting_cases
    from tongban.store.tables import case_snapshots

    assert world.run("ingest__cq-samr-rest")["state"] == "success"  # cases under way, catalogue version 1 synced
    ok = world.run("ops__catalog_sync")
    assert ok["state"] == "success"
    report = ok["xcom"]["catalog_sync"]
    assert report["version"] == 1 and report["affected_files"] == {} and report["problems_by_file"] == {}

    store = _store(world.env)
    with store.read() as conn:
        snapshots = [json.loads(reveal(s)) for s in conn.execute(select(case_snapshots.c.snapshot)).scalars()]
    code = Counter(s["item_code"] for s in snapshots if not s.get("conclusion")).most_common(1)[0][0]
    open_cases = waiting_cases(store, [code])[code]["open_cases"]
    assert open_cases >= 1
    platform_url = world.env["TONGBAN_PLATFORM_URL"]
    httpx.post(f"{platform_url}/_sandbox/catalog", json={"retire": [code]}).raise_for_status()

    failed = world.run("ops__catalog_sync")

    assert failed["state"] == "failed"
    assert failed["tries"]["catalog_sync"] == [1, "failed"]  # a finding, not an outage: no retry
    assert current(store).version == 2  # it did sync the new version before judging it
    mapping = world.mappings / "cq-samr-rest.yaml"
    assert f"{mapping}: sends withdrawn 实施编码 {code} — {open_cases} open cases, 0 quarantined" in failed["log"]
    assert re.search(rf"{re.escape(str(mapping))}: items: \S+ → {code}: retired: ", failed["log"])
    # The next day it still fails: the mapping table still sends the retired item.
    assert world.run("ops__catalog_sync")["state"] == "failed"


def test_identity_retry_is_retried_by_airflow_while_throttled_and_then_replays_the_waiting_case(world):
    from tongban import codes
    from tongban.store.tables import case_snapshots

    platform_url = world.env["TONGBAN_PLATFORM_URL"]
    bad = world.world.bad_cases()
    victim = next(r for r in world.world.records() if r["ywh"] not in bad and r["zjlx"] == "SFZ" and len(r["zjhm"]) == 18
                  and codes.normalise(r["zjhm"]).isascii() and r["zjhm"][-1].isdigit())
    httpx.post(f"{platform_url}/_sandbox/users", json={"unknown": [victim["zjhm"]]}).raise_for_status()
    assert world.run("ingest__cq-samr-rest")["state"] == "success"  # the victim's case waits in quarantine

    nothing_yet = world.run("ops__identity_retry")
    assert nothing_yet["state"] == "success"
    assert nothing_yet["xcom"]["identity_retry"]["replayed"] == 0  # the service still does not know them

    # The service knows the applicant now, but throttles the next requests (every quick retry inside the first try).
    httpx.post(f"{platform_url}/_sandbox/users",
               json={"known": [victim["zjhm"]], "throttle_next": 8, "retry_after": 0}).raise_for_status()

    run = world.run("ops__identity_retry", retry_delay=1)

    assert run["state"] == "success"
    assert run["tries"]["identity_retry"][0] >= 2  # the throttled try raised; Airflow tried again
    assert "the unified user service throttled the retry" in run["log"]
    summary = run["xcom"]["identity_retry"]
    assert summary["throttled"] is False and summary["replayed"] >= 1 and summary["waiting"] == 0
    with _store(world.env).read() as conn:
        snapshot = conn.execute(select(case_snapshots.c.snapshot)
                                .where(case_snapshots.c.source_key == victim["ywh"])).scalar()
    assert snapshot and json.loads(reveal(snapshot))["application"]["applicant_user_id"].startswith("U")
