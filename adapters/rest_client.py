"""What the REST adapter (fetch) and the REST submitter share: one legacy REST system's client, built from its settings.

`RestClient` is a mixin for an adapter or submitter whose `settings_model` is `RestSettings` (or a subclass):
`_connect(settings, seams)` validates the settings into `config`, then builds the bounded HTTP client (adapters/rest_http.py), the retry policy (`retry:`), the compiled
envelope rules (`envelope:`) and the auth (`auth:`, whose logins go through the same bounded client), and
`_judge(body)` reads an answer through the envelope rules. The two sides differ in what they ask and what an answer
means to them; this module refuses to know either.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import jmespath

from adapters.rest_auth import build_auth, quote_answer
from adapters.rest_http import BoundedHttp
from adapters.rest_settings import RestSettings
from adapters.settings import validate_settings

ENVELOPE_RULES = ("success", "retry", "reauth", "message")


class RestClient:
    system: str
    settings_model: type[RestSettings]

    def _connect(self, settings: dict[str, Any], seams: dict[str, Any]) -> None:
        """Seams: `transport=` (httpx.MockTransport), `clock=` (monotonic seconds), `sleep=` (retry waits)."""
        self.config = config = validate_settings(self.settings_model, self.system, settings)
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
