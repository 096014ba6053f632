"""Bundled applications (一件事一次办) end to end, through the real RabbitMQ and PostgreSQL: the mock 渝快办 offers an
application, tongban submits its members to the departments' mock systems (REST POST, REST PUT, JSON and XML file
drops) in dependency order, their cases come back through the ordinary ingest, and the bundle's status goes back."""
from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner
from sqlalchemy import select

from sandbox.bundle_demo import BundleSandbox, business_form, newborn_form
from sandbox.platform import create_app as platform_app
from sandbox.runner import Server
from tests.conftest import AMQP_URL
from tongban.audit import ledger
from tongban.bundle import tables as t
from tongban.bundle.topology import bundles_work
from tongban.bundle.views import bundle_view, late_members
from tongban.bus.topology import cases_work
from tongban.cli import app
from tongban.delivery.retry import RedeliveryPolicy
from tongban.platform.client import PlatformClient
from tongban.settings import Settings

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
FAST = RedeliveryPolicy(max_attempts=6, initial_delay=0.1, max_delay=0.2)


@pytest.fixture
def world(tmp_path, pg_store, monkeypatch):
    from tongban.bus.rabbit import RabbitBus

    monkeypatch.setenv("TONGBAN_MAPPINGS", str(tmp_path / "no-mappings"))  # the platform seeds the sandbox's items
    platform_server = Server(platform_app(str(tmp_path / "platform.db")), port=0, name="platform").start()
    sandbox = BundleSandbox(tmp_path, platform_server.url).start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    bus = RabbitBus(AMQP_URL)
    platform = PlatformClient(Settings(home=tmp_path, platform_url=platform_server.url))

    class World:
        store, definitions = pg_store, sandbox.definitions()
        bundle_work, case_work = bundles_work(prefix), cases_work(prefix)

        def day(self, advance: bool = True) -> dict:
            result = sandbox.gather(store=pg_store, bus=bus, platform=platform, definitions=self.definitions,
                                    bundle_work=self.bundle_work, case_work=self.case_work, policy=FAST,
                                    idle_exit=0.3)
            if advance:
                sandbox.advance(1)
            return result

        def view(self, app_id: str) -> dict:
            return bundle_view(pg_store, app_id, self.definitions)

        def states(self, app_id: str) -> dict:
            return {m["member"]: m["state"] for m in self.view(app_id)["members"]}

        def platform_statuses(self, app_id: str) -> list:
            return platform.get(f"/api/v1/bundle-applications/{app_id}")["statuses"]

    World.sandbox, World.platform = sandbox, platform
    try:
        yield World()
    finally:
        sandbox.stop()
        platform.close()
        platform_server.stop()
        for work in (World.bundle_work, World.case_work):
            bus.delete(work)
        bus.close()


def cli_env(world) -> dict:
    return {"TONGBAN_DB_URL": world.store.url, "TONGBAN_MAPPINGS": str(REPO / "mappings"), "TONGBAN_BUS": "inprocess"}


def hops(store, app_id: str, hop: str) -> list[dict]:
    return [e for e in ledger.trace(store, app_id) if e["hop"] == hop]


def days_until(world, condition, most: int = 14) -> int:
    """Run sandbox days until `condition()` holds; how many it took (the test fails past `most`)."""
    for day in range(1, most + 1):
        world.day()
        if condition():
            return day
    pytest.fail(f"not reached in {most} sandbox days")


def test_newborn_bundle_in_dependency_order_with_a_transient_failure_and_a_late_member(world):
    sandbox = world.sandbox
    sandbox.control("ybj", "behaviour", {"slow_ticks": 9})          # 医保 takes far longer than its 5 working days
    app_id = sandbox.offer("newborn", newborn_form(1))

    world.day()                                                       # three members go out, 户口登记 waits
    assert world.states(app_id) == {"birth_certificate": "submitted", "household": "waiting",
                                    "medical_insurance": "submitted", "social_security_card": "submitted"}
    assert world.view(app_id)["members"][1]["waiting_on"] == ["birth_certificate"]

    sandbox.control("gaj", "faults", {"fail_next": 5, "status": 503})  # 公安 fails more often than one call retries
    days_until(world, lambda: world.states(app_id)["household"] != "waiting")
    assert world.states(app_id)["birth_certificate"] == "granted"
    assert world.states(app_id)["household"] == "submitted", "公安 recovered: the member went out on a bus retry"
    assert sandbox.world.departments["gaj"].submissions == {f"{app_id}-household": 1}, "delivered once"
    assert hops(world.store, app_id, "retried"), "the transient failure went round the delay queue"

    days_until(world, lambda: bool(hops(world.store, app_id, "member_late")))
    late = hops(world.store, app_id, "member_late")
    assert [e["detail"]["member"] for e in late] == ["medical_insurance"]
    assert late[0]["detail"]["department"] == "重庆市医疗保障局"
    assert "重庆市医疗保障局" in late_members(world.store, sandbox.clock())
    assert world.states(app_id)["medical_insurance"] == "accepted"
    assert world.view(app_id)["state"] == "open"
    result = CliRunner().invoke(app, ["bundle", "late", "--json", "--at", sandbox.clock().isoformat()],
                                env=cli_env(world))
    assert result.exit_code == 1, result.output  # someone is late: the command says so
    assert [m["member"] for m in json.loads(result.stdout)["departments"]["重庆市医疗保障局"]] == ["medical_insurance"]

    days_until(world, lambda: world.view(app_id)["state"] == "concluded")
    view = world.view(app_id)
    assert view["result"] == "granted"
    assert set(world.states(app_id).values()) == {"granted"}
    statuses = world.platform_statuses(app_id)
    assert [(s["status"], s["result"]) for s in statuses] == [("受理", None), ("办结", "granted")]
    assert len(hops(world.store, app_id, "member_late")) == 1, "the late member is warned once"

    # Dependency order in the ledger: 户口登记 went out only after 出生医学证明 was granted.
    trace = ledger.trace(world.store, app_id)
    order = [(e["hop"], e["detail"].get("member"), e["detail"].get("to")) for e in trace]
    assert order.index(("member_changed", "birth_certificate", "granted")) < \
        order.index(("member_submitted", "household", None))
    # The trace of the bundle holds every member's case and the platform's receipts for them.
    numbers = {m["case_number"] for m in view["members"]}
    assert None not in numbers and len(numbers) == 4
    receipts = {e["case_number"] for e in trace if e["hop"] == "receipt"}
    assert numbers <= receipts

    # The operator's view: `tongban trace APP_ID` and `tongban bundle late` read the same store.
    env = cli_env(world)
    result = CliRunner().invoke(app, ["trace", app_id, "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["bundle"]["result"] == "granted"
    assert {m["case_number"] for m in shown["bundle"]["members"]} == numbers
    assert {"member_submitted", "bundle_status", "member_late", "receipt"} <= {e["hop"] for e in shown["events"]}
    result = CliRunner().invoke(app, ["trace", app_id], env=env)
    assert "新生儿出生一件事" in result.stdout and "预警 (late)" in result.stdout
    result = CliRunner().invoke(app, ["bundle", "late", "--json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["late"] == 0, "a concluded bundle has no late members"


def _concluded_with_a_refusal(world, department: str, bundle: str, form: dict, applicant: str) -> str:
    """A bundle application whose `applicant` (the name the department checks, 申请人姓名) `department` refuses,
    run day by day until it concluded: its id."""
    world.sandbox.control(department, "behaviour", {"refuse_if": {"sqrxm": applicant}})
    app_id = world.sandbox.offer(bundle, form)
    days_until(world, lambda: world.view(app_id)["state"] == "concluded")
    return app_id


def test_a_refused_licence_ends_the_business_bundle(world):
    sandbox = world.sandbox
    form = business_form(7)
    app_id = _concluded_with_a_refusal(world, "samr", "business-start", form, form["company"]["name"])
    view = world.view(app_id)
    assert view["result"] == "refused"
    assert world.states(app_id) == {"business_licence": "refused", "company_seal": "cancelled",
                                    "tax_registration": "cancelled", "social_insurance": "cancelled"}
    assert [(s["status"], s["result"]) for s in world.platform_statuses(app_id)] == [("办结", "refused")]
    assert not sandbox.world.departments["gaj"].submissions, "nothing was submitted after the refusal"
    # Running again changes nothing: idempotent.
    before = len(ledger.trace(world.store, app_id))
    world.day()
    assert len(ledger.trace(world.store, app_id)) == before
    with world.store.read() as conn:
        assert conn.execute(select(t.bundle_applications.c.application_id)).all() == [(app_id,)]


def test_a_refusal_outside_refusal_ends_leaves_the_bundle_partly_granted(world):
    form = newborn_form(3)
    app_id = _concluded_with_a_refusal(world, "ybj", "newborn", form, form["applicant"]["name"])
    assert world.view(app_id)["result"] == "partly_granted"
    assert world.states(app_id) == {"birth_certificate": "granted", "household": "granted",
                                    "medical_insurance": "refused", "social_security_card": "granted"}
    assert [(s["status"], s["result"]) for s in world.platform_statuses(app_id)] == [
        ("受理", None), ("办结", "partly_granted")], "every member was accepted before one was refused"
