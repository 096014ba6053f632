"""Shared fixtures: stores on SQLite and the real PostgreSQL, RabbitMQ queues of one's own, the sandbox servers."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

AMQP_URL = os.environ.get("TONGBAN_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # Airflow configures logging when it is first imported, binding its handlers to the sys.stderr of that moment.
    # Inside a CliRunner call (`tongban mapping check` asks Airflow's own timetable) that stream is closed after the
    # call, and every later log record then printed "--- Logging error ---" and a traceback into the next command's
    # output. Import it once here, while pytest's session-long streams are in place.
    import airflow.sdk  # noqa: F401


# The order in which `make test`'s parallel workers (pytest-xdist) take tests: the long ones first, so that none of
# them starts last and runs alone at the end while the other workers idle; the many short ones fill in after. A
# test's own timeout says how long it may run (chaos 1,500 s, the Airflow clusters 600 s), then its markers and
# its folder say how long it usually does.
_LONG_FIRST = ("slow", "celery", "scheduler", "airflow")
_BY_FOLDER = {"e2e": len(_LONG_FIRST), "integration": len(_LONG_FIRST) + 1}


def _start_rank(item) -> tuple[float, int]:
    timeout = item.get_closest_marker("timeout")
    allowed = float(timeout.args[0]) if timeout and timeout.args else 300.0
    by_kind = next((rank for rank, marker in enumerate(_LONG_FIRST) if item.get_closest_marker(marker)),
                   _BY_FOLDER.get(item.path.parent.name, len(_LONG_FIRST) + 2))
    return -(allowed or float("inf")), by_kind


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker collects, and sorts alike (a stable sort)
        items.sort(key=_start_rank)


@pytest.fixture(autouse=True)
def _settings_of_this_test(monkeypatch):
    """Every test starts with no settings loaded: the process's settings (`tongban.settings.current()`, read once)
    are those of this test's environment, not of whichever test this worker ran before (a TONGBAN_PII_KEY of its
    own would otherwise encrypt this test's records under a key its next `load()` no longer has)."""
    from tongban import settings

    monkeypatch.setattr(settings, "_current", None)


@pytest.fixture(autouse=True)
def _stores_at_head(request, monkeypatch):
    """Every store a test opens in this process starts at the schema's head, as `tongban db upgrade` leaves it
    (tests/schema_at_head.py: the migrations rendered once as SQL). A test marked `schema_unprepared` meets the
    runtime's own refusal of a database that is not at head."""
    if request.node.get_closest_marker("schema_unprepared"):
        return
    from tests.schema_at_head import apply_if_empty
    from tongban.store import schema

    require_current = schema.require_current

    def prepared(engine, url):
        apply_if_empty(engine)
        require_current(engine, url)

    monkeypatch.setattr(schema, "require_current", prepared)


@pytest.fixture
def sqlite_store(tmp_path):
    from tongban.store import Store

    store = Store(f"sqlite:///{tmp_path}/tongban.db")
    yield store
    store.dispose()


@pytest.fixture
def pg_store():
    """A store in a schema of its own on the real PostgreSQL, dropped afterwards."""
    from tests.support import scratch_pg_schema
    from tongban.store import Store

    with scratch_pg_schema() as url:
        store = Store(url)
        yield store
        store.dispose()


@pytest.fixture(params=["sqlite", "pg"])
def store(request):
    """Both ledger back ends."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def rabbit_work():
    """Case queues under a prefix of their own on the real RabbitMQ, deleted afterwards."""
    from tongban.bus.rabbit import RabbitBus
    from tongban.bus.topology import cases_work

    work = cases_work(f"test-{uuid.uuid4().hex[:8]}")
    yield work
    RabbitBus(AMQP_URL).delete(work)


@pytest.fixture
def rabbit_bus():
    from tongban.bus.rabbit import RabbitBus

    bus = RabbitBus(AMQP_URL)
    yield bus
    bus.close()


class SandboxServers:
    def __init__(self, home, cases: int, bad_share: float = 0.05):
        from sandbox.legacy_rest import create_app as legacy_app
        from sandbox.legacy_world import LegacyWorld
        from sandbox.platform import create_app as platform_app
        from sandbox.runner import Server

        self.world = LegacyWorld(seed=11, cases=cases, bad_share=bad_share)
        self.platform = Server(platform_app(str(home / "platform.db")), name="platform").start()
        self.legacy = Server(legacy_app(self.world, token="test-token"), name="legacy").start()

    def stop(self):
        self.platform.stop()
        self.legacy.stop()


@pytest.fixture
def sandbox_env(tmp_path, monkeypatch):
    """The mock platform and a small legacy REST world, with the environment pointing at them."""
    from tests.schema_at_head import home_at_head

    servers = SandboxServers(tmp_path, cases=120)
    monkeypatch.setenv("TONGBAN_HOME", str(home_at_head(tmp_path / "home")))  # `tongban` subprocesses use it too
    monkeypatch.setenv("TONGBAN_PLATFORM_URL", servers.platform.url)
    monkeypatch.setenv("CQ_SAMR_URL", servers.legacy.url)
    monkeypatch.setenv("CQ_SAMR_TOKEN", "test-token")
    yield servers
    servers.stop()


@pytest.fixture
def sinks(tmp_path):
    """The sandbox district sinks (数据回流's receiving end), running."""
    from sandbox.district_sinks import DistrictSinkWorld

    world = DistrictSinkWorld(tmp_path / "sinks").start()
    yield world
    world.stop()


@pytest.fixture
def sinks_file(tmp_path, sinks) -> Path:
    """A flowback sinks file for `sinks`, retrying quickly."""
    import yaml

    path = tmp_path / "sinks.yaml"
    config = sinks.sinks_config(retry={"initial_delay": 0.05, "max_delay": 0.2, "max_attempts": 4}).model_dump()
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def samr_mappings(tmp_path, monkeypatch):
    """A mapping folder holding the REST department (cq-samr-rest) alone with the code tables, on the embedded bus:
    what an operator has after copying one system's file."""
    folder = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings" / "tables", folder / "tables")
    shutil.copy(REPO / "mappings" / "cq-samr-rest.yaml", folder)
    monkeypatch.setenv("TONGBAN_MAPPINGS", str(folder))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    return folder


@pytest.fixture
def say(request):
    """say(text): a line straight to the terminal, past output capture — the restart tests and the soak announce
    what they are about to do to a service before doing it (other work on the machine may notice)."""
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(text: str) -> None:
        with capture.global_and_fixture_disabled():
            if reporter is not None:
                reporter.write_line(f"[{request.node.name}] {text}")
            else:
                print(f"[{request.node.name}] {text}", flush=True)

    return say
