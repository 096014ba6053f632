"""REST submitter: a bundle member's application POSTed (or PUT) to a legacy REST system, declared in the mapping.

The department's mapping file gains a `submit:` section beside its `source:`, with the same auth, envelope,
retry, timeout and limits settings as the fetch side (adapters/rest_settings.py) and these of its own:

    submit:
      adapter: rest
      base_url: ${CQ_GAJ_URL:-http://127.0.0.1:8711}
      method: POST                       # or PUT; path may name {reference} (PUT /api/applications/{reference})
      path: /gaj/api/applications
      auth: {type: bearer, token_env: CQ_GAJ_TOKEN}
      envelope: {success: "code == `0`", retry: "code == `9999`", message: message}
      key_path: data.ywh                 # JMESPath to the legacy system's case key in the answer
      reference_field: wbbh              # body field that carries tongban's reference (外部编号)
      item_field: sxbm                   # body field that carries the 实施编码
      fields_at: ""                      # "" : the form fields sit at the top of the body; "data": under data
      retry: {attempts: 5, initial_wait: 0.5, max_wait: 30}

Idempotency: the reference travels as the `Idempotency-Key` header and in `reference_field`; a legacy system that
answers a resubmission with the case it already opened gives the same key.
What each answer means is the fetch side's: transient statuses and the envelope's `retry` are retried, then
`TransientSourceError`; 401 with a login token logs in again once; other 4xx and envelope errors are `SourceError`
quoting the legacy message; a body over the limits or without a usable key at `key_path` is refused.
"""
from __future__ import annotations

import logging
from typing import Any, Literal

import jmespath
from pydantic import Field, field_validator

from adapters.base import SourceError, TransientSourceError
from adapters.rest_client import RestClient
from adapters.rest_settings import RestSettings, _check_jmespath, _strict
from adapters.submit import SubmitReceipt, Submission, Submitter, checked_key
from tongban.retry import Retryable

log = logging.getLogger(__name__)


class RestSubmitSettings(RestSettings):
    """The `submit:` section of a REST department (without `adapter: rest`)."""

    model_config = _strict({"base_url": "http://127.0.0.1:8711", "method": "POST", "path": "/gaj/api/applications",
                            "auth": {"type": "bearer", "token_env": "CQ_GAJ_TOKEN"}, "key_path": "data.ywh",
                            "envelope": {"success": "code == `0`", "message": "message"}})
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method of the submission.")
    key_path: str = Field(description="JMESPath to the legacy system's case key in the answer.")
    reference_field: str = Field("reference", min_length=1, description="Body field carrying tongban's reference.")
    item_field: str = Field("item_code", min_length=1, description="Body field carrying the 实施编码.")
    fields_at: str = Field("", description="Body field under which the form fields go ('' : at the top).")

    @field_validator("key_path")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check_jmespath(value) or value


class RestSubmitter(RestClient, Submitter):  # kind "rest", as RestClient says
    settings_model = RestSubmitSettings
    config: RestSubmitSettings

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)
        self.key_path = jmespath.compile(self.config.key_path)

    def _refusal(self, what: str, verdict: str, message: str, renewed: bool) -> SourceError:
        if verdict == "unauthorized":
            return SourceError(self.system, f"{what} answered HTTP 401 (credentials refused)")
        return SourceError(self.system, f"{what}: {self.system} refused the submission: {message}")

    def body(self, submission: Submission) -> dict[str, Any]:
        fields = dict(submission.fields)
        body: dict[str, Any] = {self.config.fields_at: fields} if self.config.fields_at else fields
        body[self.config.reference_field] = submission.reference
        body[self.config.item_field] = submission.item_code
        return body

    def submit(self, submission: Submission) -> SubmitReceipt:
        path = self.config.path.replace("{reference}", submission.reference)
        what = f"{self.config.method} {path} ({submission.reference})"
        body = self.body(submission)
        headers = {"Idempotency-Key": submission.reference}
        attempt = self._attempt(what, lambda: self.http.exchange(self.config.method, path, auth=self.auth, what=what,
                                                                 json_body=body, headers=headers))
        self.http.start_run()
        try:
            answer = self.policy.call(attempt, deadline=self.http.run_deadline, clock=self.clock,
                                      before_sleep=lambda exc, n, wait: log.warning(
                                          "%s: %s (attempt %d), retrying in %.1f s", self.system, exc, n, wait))
        except Retryable as exc:
            raise TransientSourceError(self.system, f"{what} failed {getattr(exc, 'attempts', '?')} times: "
                                                    f"{exc}") from exc
        key = checked_key(self.system, self.key_path.search(answer.body), f"{what}: key_path {self.config.key_path!r}")
        return SubmitReceipt(key, {"method": self.config.method, "path": path})

    def close(self) -> None:
        self.http.close()
