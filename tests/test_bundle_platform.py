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
