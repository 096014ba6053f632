"""The mock 渝快办's bundle desk keeps the bundle's own status honest: 受理 once, 办结 once and last, a granted 办结
only after 受理, and an Idempotency-Key never reused for another body."""
from __future__ import annotations

from sandbox.platform_bundles import BundleDesk, Offer


def test_the_status_rules_and_idempotency():
    desk = BundleDesk()
    app_id = desk.offer(Offer(bundle="newborn", form={"a": 1}))["application_id"]
    assert desk.offer(Offer(bundle="newborn", form={}, application_id=app_id))["duplicate"]
    granted = {"status": "办结", "result": "granted", "members": []}
    assert desk.status(app_id, granted, "k1") == (409, {"error": "state", "rule": "granted 办结 before 受理"})
    accepted = {"status": "受理", "members": []}
    assert desk.status(app_id, accepted, "k2")[0] == 200
    code, answer = desk.status(app_id, accepted, "k2")
    assert code == 200 and answer["duplicate"], "a retried push is answered, not stored twice"
    assert desk.status(app_id, {**accepted, "note": "x"}, "k2")[0] == 409, "same key, other body"
    assert desk.status(app_id, accepted, "k3") == (409, {"error": "state", "rule": "受理 twice"})
    assert desk.status(app_id, granted, "k4")[0] == 200
    assert desk.status(app_id, {"status": "办结", "result": "refused"}, "k5")[1]["rule"] == "nothing after 办结"
    assert [s["status"] for s in desk.by_id[app_id]["statuses"]] == ["受理", "办结"]


def test_a_refused_bundle_may_end_before_acceptance():
    desk = BundleDesk()
    app_id = desk.offer(Offer(bundle="business-start", form={}))["application_id"]
    assert desk.status(app_id, {"status": "办结", "result": "refused"}, "k")[0] == 200
    assert desk.status("nope", {"status": "受理"}, "k9")[0] == 404


def test_a_restarted_desk_numbers_after_the_old_one():
    first = BundleDesk()
    last = first.offer(Offer(bundle="newborn", form={}))["seq"]
    again = BundleDesk()  # the sandbox platform restarted: a consumer's watermark must not hide new applications
    assert again.offer(Offer(bundle="newborn", form={}))["seq"] > last


def test_bundle_run_from_the_cli_fetches_and_reports_json(tmp_path):
    import json

    import httpx
    from typer.testing import CliRunner

    from sandbox.platform import create_app
    from sandbox.runner import Server
    from tongban.cli import app

    server = Server(create_app(str(tmp_path / "platform.db")), port=0, name="platform").start()
    try:
        httpx.post(f"{server.url}/_sandbox/bundle-applications",
                   json={"bundle": "no-such-bundle", "form": {}}).raise_for_status()
        env = {"TONGBAN_HOME": str(tmp_path / "home"), "TONGBAN_BUS": "inprocess", "TONGBAN_DB_URL": "",
               "TONGBAN_PLATFORM_URL": server.url}
        result = CliRunner().invoke(app, ["bundle", "run", "--json", "--idle", "0.3"], env=env)
        # An application of a bundle nobody defined is parked (never dropped): the run says so with exit 1.
        assert result.exit_code == 1, result.output
        data = json.loads(result.stdout)
        assert data["fetched"] == 1 and data["parked"] == 1 and data["received"] == 0
        again = CliRunner().invoke(app, ["bundle", "run", "--json", "--idle", "0.3"], env=env)
        assert json.loads(again.stdout)["fetched"] == 0, "the platform's sequence is a watermark"
    finally:
        server.stop()
