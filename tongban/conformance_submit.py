"""Conformance kit for the submit side of adapters (adapters/submit.py), as a pytest base class.

A submitter author subclasses `SubmitterConformance`, names the submitter kind and a department mapping file with a
`submit:` section, and implements hooks against a sandbox copy of the department system:

    from tongban.conformance import SubmitterConformance

    class TestMySubmitter(SubmitterConformance):
        submitter_kind = "rest"
        mapping_file = "mappings/bundles/departments/cq-gaj-rest.yaml"   # its submit: is replaced by start_target()'s

        def start_target(self, workdir): ...         # start the sandbox system, return the submit settings
        def cases_opened(self, reference) -> int: ... # how many cases the system opened for a reference
        def fail_target_once(self): ...              # the next submission fails transiently (503, a full disk …)
        def refuse_next(self, reference): ...        # the submission of `reference` will be refused for good
        def serve_hostile_answer(self, kind): ...    # the next answer is hostile: "huge", "deep", "html", "nokey"

and inherits the checks below: the submitter is registered and its settings validate; a submission answers a usable
key; the same reference submitted again opens no second case and answers the same key (idempotent resubmission); a
transient failure is retried (within the call, or — `retries_within_submit = False` — raised as
TransientSourceError and then delivered once by the next try); a refusal is a SourceError naming the system; every
hostile answer is a SourceError, never a key. A hook left unimplemented skips the checks that need it.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pytest

from adapters.base import SourceError, TransientSourceError
from adapters.submit import Submission, Submitter, submitter_class

HOSTILE_ANSWERS = ("huge", "deep", "html", "nokey", "object_key")


class SubmitterConformance:
    submitter_kind: ClassVar[str] = ""
    mapping_file: ClassVar[str | Path] = ""
    item_code: ClassVar[str] = "11500000MB1D2201952500708201000"
    retries_within_submit: ClassVar[bool] = True

    # --- hooks ---------------------------------------------------------------------------------------------
    def start_target(self, workdir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def stop_target(self) -> None:
        """Stop what start_target started."""

    def cases_opened(self, reference: str) -> int:
        raise NotImplementedError

    def fail_target_once(self) -> None:
        raise NotImplementedError

    def refuse_next(self, reference: str) -> None:
        raise NotImplementedError

    def serve_hostile_answer(self, kind: str) -> None:
        raise NotImplementedError

    # --- plumbing ------------------------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _conformance_target(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        if not self.submitter_kind or not self.mapping_file:
            pytest.fail(f"{type(self).__name__} must set submitter_kind and mapping_file")
        self.workdir, self.monkeypatch = tmp_path, monkeypatch
        self.settings = self.start_target(tmp_path)
        try:
            yield
        finally:
            self.stop_target()

    def make_submitter(self) -> Submitter:
        from tongban.bundle.submit import load_submit_target

        target = load_submit_target(self.mapping_file)
        return submitter_class(self.submitter_kind)(target.system, dict(self.settings))

    def submission(self, reference: str | None = None) -> Submission:
        reference = reference or f"CONF-{uuid.uuid4().hex[:12]}"
        return Submission(reference, self.item_code, {"sqrxm": "王芳", "zjlx": "SFZ", "zjhm": "500103199001011233",
                                                      "xzqh": "500103", "xsexm": "王小明"})

    def submit(self, submission: Submission):
        submitter = self.make_submitter()
        try:
            return submitter.submit(submission)
        finally:
            submitter.close()

    def _hook(self, name: str, *args: Any) -> None:
        try:
            getattr(self, name)(*args)
        except NotImplementedError:
            pytest.skip(f"{type(self).__name__} does not implement {name}()")

    # --- the checks ----------------------------------------------------------------------------------------
    def test_submitter_is_registered_and_its_settings_validate(self):
        cls = submitter_class(self.submitter_kind)
        assert issubclass(cls, Submitter) and cls.kind == self.submitter_kind
        if cls.settings_model is not None:
            cls.settings_model.model_validate(self.settings)

    def test_a_submission_answers_a_usable_key(self):
        submission = self.submission()
        receipt = self.submit(submission)
        assert isinstance(receipt.legacy_key, str) and receipt.legacy_key
        assert self.cases_opened(submission.reference) == 1

    def test_resubmission_is_idempotent(self):
        submission = self.submission()
        first = self.submit(submission)
        again = self.submit(submission)
        assert again.legacy_key == first.legacy_key, "a resubmission answered another key"
        assert self.cases_opened(submission.reference) == 1, "a resubmission opened a second case"

    def test_a_transient_failure_is_retried_and_delivered_once(self):
        submission = self.submission()
        self._hook("fail_target_once")
        if self.retries_within_submit:
            receipt = self.submit(submission)
        else:
            with pytest.raises(TransientSourceError):
                self.submit(submission)
            receipt = self.submit(submission)
        assert receipt.legacy_key
        assert self.cases_opened(submission.reference) == 1

    def test_a_refusal_is_a_named_permanent_error(self):
        submission = self.submission()
        self._hook("refuse_next", submission.reference)
        with pytest.raises(SourceError) as caught:
            self.submit(submission)
        assert not isinstance(caught.value, TransientSourceError), "a refusal must not be retried"
        assert self.make_submitter().system in str(caught.value), "the error must name the system"

    @pytest.mark.parametrize("kind", HOSTILE_ANSWERS)
    def test_a_hostile_answer_is_refused(self, kind):
        self._hook("serve_hostile_answer", kind)
        with pytest.raises(SourceError) as caught:
            self.submit(self.submission())
        assert not isinstance(caught.value, TransientSourceError)
