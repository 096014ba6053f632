"""What the REST adapter (fetch) and the REST submitter share: one legacy REST system's client, built from its settings.

`RestClient` is a mixin for an adapter or submitter whose `settings_model` is `RestSettings` (or a subclass): its
construction validates the settings into `config`, then builds the bounded HTTP client (adapters/rest_http.py), the
retry policy (`retry:`), the compiled envelope rules (`envelope:`) and the auth (`auth:`, whose logins go through the
same bounded client). `_judge(body)` reads an answer through the envelope rules, and `_attempt(what, send)` is one
try of a logical request for the retry policy: the same login renewal and the same busy answer on both sides. The two
sides differ in what they ask and in what a refusal means to them (`_refusal`); this module refuses to know either.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import jmespath

from adapters.base import SourceError
from adapters.rest_auth import build_auth, quote_answer
from adapters.rest_http import Answer, BoundedHttp, Unauthorized
from adapters.rest_settings import RestSettings
from adapters.settings import Configured
from tongban.retry import Retryable

ENVELOPE_RULES = ("success", "retry", "reauth", "message")


class RestClient(Configured):
    kind = "rest"
    system: str
    settings_model: type[RestSettings]
    config: RestSettings

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        """Seams: `transport=` (httpx.MockTransport), `clock=` (monotonic seconds), `sleep=` (retry waits)."""
        super().__init__(system, settings, **seams)
        config = self.config
        self.clock = seams.get("clock", time.monotonic)
        self.http = BoundedHttp(self.system, config.base_url, timeout=config.timeout, limits=config.limits,
                                transport=seams.get("transport"), clock=self.clock)
        self.policy = config.retry.policy(**({"sleep": seams["sleep"]} if "sleep" in seams else {}))
        self.envelope = None if config.envelope is None else {
            name: jmespath.compile(expr) for name in ENVELOPE_RULES if (expr := getattr(config.envelope, name))}
        try:
            self.auth = build_auth(self.system, config.base_url, config.auth, self._post, self.clock)
        except BaseException:
            self.http.close()
            raise

    def _post(self, url: str, *, method: str, auth: Any, what: str, json: Any = None, data: dict | None = None) -> Any:
        """A login or token request (its origin may differ from base_url's: it is declared, not linked)."""
        return self.http.exchange(method, url, auth=auth, what=what, json_body=json, data=data, declared=True).body

    def _judge(self, body: Any, quote: Callable[[Any], str] = quote_answer) -> tuple[str, str]:
        """success | retry | reauth | error, and the legacy message to quote (`quote(body)` when it names none)."""
        if self.envelope is None or self.envelope["success"].search(body):
            return "success", ""
        message = self.envelope["message"].search(body) if "message" in self.envelope else None
        quoted = repr(str(message)[:200]) if message not in (None, "") else quote(body)
        for verdict in ("retry", "reauth"):
            if verdict in self.envelope and self.envelope[verdict].search(body):
                return verdict, quoted
        return "error", quoted

    def _renew(self, renewed: bool) -> bool:
        """Log in again, once per logical request (False: renewed already, or nothing to renew)."""
        return not renewed and self.auth is not None and self.auth.invalidate()

    def _refusal(self, what: str, verdict: str, message: str, renewed: bool) -> SourceError:
        """What a refused request is to this side: verdict `unauthorized` (HTTP 401), `reauth` (an expired-token
        answer that no new login cured) or `error` (an envelope error); `renewed` says whether a new login was tried."""
        raise NotImplementedError

    def _attempt(self, what: str, send: Callable[[], Answer]) -> Callable[[], Answer]:
        """One try of a logical request, for the retry policy: the auth prepared, `send()`, the answer judged. A refused
        token (HTTP 401 or a reauth answer) logs in again, once per logical request; a busy answer is Retryable."""
        renewed = False

        def attempt() -> Answer:
            nonlocal renewed
            while True:
                if self.auth is not None:
                    self.auth.prepare()
                try:
                    answer = send()
                except Unauthorized:
                    if self._renew(renewed):
                        renewed = True
                        continue
                    raise self._refusal(what, "unauthorized", "", renewed) from None
                verdict, message = self._judge(answer.body)
                if verdict == "success":
                    return answer
                if verdict == "reauth" and self._renew(renewed):
                    renewed = True
                    continue
                if verdict == "retry":
                    raise Retryable(f"{what}: {self.system} answered busy inside HTTP 200: {message}")
                raise self._refusal(what, verdict, message, renewed)

        return attempt
