"""SOAP source adapter (kind "soap"): a legacy WSDL service in, plain-dict records out.

Settings (the `source:` section of a mapping file; secrets are named, never written):

    adapter: soap
    wsdl: http://10.1.2.3/hrss/CaseService?wsdl     # URL or local path
    service: HrssCaseService                        # optional when the WSDL has one service/port
    port: HrssCasePort
    operation: QueryCases
    params: {}                                      # constant request parameters
    watermark_param: ModifiedAfter                  # the watermark goes here (omitted on a first full fetch)
    watermark_field: ModifyTime                     # optional: record field reported as meta["watermark"]
    paging: {page_param: PageNo, size_param: PageSize, size: 200, start: 1}   # stop at a short page
    records_path: Records.Record                    # dotted path into the serialized response
    auth: {type: basic | wsse, username_env: HRSS_USER, password_env: HRSS_PASSWORD}
    timeout: 30                                     # seconds, per HTTP call
    retry: {attempts: 4, initial_wait: 0.5, max_wait: 10}
    wsdl_cache: memory | sqlite | none              # sqlite: $TONGBAN_HOME/zeep-wsdl-cache.db

The settings are declared in adapters/soap_settings.py (`SoapAdapter.settings_model`); an unknown key is an error.
Timeouts, connection errors and the transient HTTP statuses (tongban.retry.TRANSIENT_STATUS) are retried with the
one retry policy (tongban.retry: exponential backoff with jitter, Retry-After honoured) and then raised as
TransientSourceError; SOAP faults and authentication failures are permanent SourceErrors.
"""
from __future__ import annotations

import json
import logging
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Iterator

import requests
import zeep
from zeep.cache import InMemoryCache, SqliteCache
from zeep.exceptions import DTDForbidden, EntitiesForbidden, Fault, TransportError, XMLSyntaxError
from zeep.helpers import serialize_object
from zeep.transports import Transport

from adapters import safexml
from adapters.base import Adapter, RawRecord, SourceError, TransientSourceError
from adapters.formats.xmlrecords import element_to_dict
from adapters.settings import Configured
from adapters.soap_settings import SoapSettings
from tongban.retry import TRANSIENT_STATUS, Retryable, retry_after_seconds
from tongban.settings import environment_value

log = logging.getLogger(__name__)


class _RetryableCall(Retryable):
    """Internal marker: a transient failure, carrying the human description for the final error."""

    def __init__(self, description: str, retry_after: float | None = None):
        super().__init__(description, retry_after)
        self.description = description


def _plain(value: Any) -> Any:
    """Serialized zeep values → JSON-friendly plain values (dates as ISO strings, Decimals as strings)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _raise_http_errors(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests hook: an HTTP error that is not a SOAP fault becomes requests.HTTPError.

    zeep reports any non-200 reply whose body happens to parse as XML (an HTML error page) as an
    "Unknown fault", losing the status code we need to tell a transient 503 from a permanent 401.
    SOAP 1.1 faults arrive with HTTP 500 and a Fault element: those go on to zeep, which names the code.
    """
    if response.status_code >= 400 and not (response.status_code == 500 and b"Fault>" in response.content):
        raise requests.HTTPError(f"HTTP {response.status_code}", response=response)


def _env(name: str | None, system: str, role: str) -> str:
    if not name:
        raise SourceError(system, f"auth.{role}_env is not set in the source settings")
    value = environment_value(name)
    if value is None:
        raise SourceError(system, f"environment variable {name} (auth.{role}_env) is not set")
    return value


def _walk(data: Any, path: str, system: str, operation: str) -> list[Any]:
    """Follow `Records.Record` into the serialized response; a missing level means no records."""
    current = data
    for part in [p for p in path.split(".") if p]:
        if current is None:
            return []
        if not isinstance(current, dict):
            raise SourceError(system, f"records_path {path!r}: cannot look up {part!r} in a {type(current).__name__} "
                                      f"in the {operation} response")
        if part not in current:
            raise SourceError(system, f"records_path {path!r}: {operation} response has no {part!r} "
                                      f"(available: {', '.join(map(str, current)) or 'nothing'})")
        current = current[part]
    if current is None:
        return []
    return current if isinstance(current, list) else [current]


class SoapAdapter(Configured, Adapter):
    kind = "soap"
    settings_model = SoapSettings

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)  # Configured: self.config, a SoapSettings
        self.operation_name: str = self.config.operation
        self._policy = self.config.retry.policy(**({"sleep": seams["sleep"]} if "sleep" in seams else {}))
        self._attempts = self._policy.attempts
        self._client: zeep.Client | None = None
        self._service = None
        self.high_watermark: str | None = None  # the largest watermark_field value seen by the last fetch

    # --- client --------------------------------------------------------------------------------
    def _transport(self) -> Transport:
        transport = self.seams.get("transport")
        timeout = float(self.settings.get("timeout", 30))
        if transport is None:
            transport = Transport(cache=self._cache(), timeout=timeout, operation_timeout=timeout)
        if _raise_http_errors not in transport.session.hooks["response"]:
            transport.session.hooks["response"].append(_raise_http_errors)
        auth = self.settings.get("auth") or {}
        if auth.get("type", "basic") == "basic" and auth:
            transport.session.auth = (_env(auth.get("username_env"), self.system, "username"),
                                      _env(auth.get("password_env"), self.system, "password"))
        return transport

    def _cache(self):
        kind = self.settings.get("wsdl_cache", "memory")
        if kind == "none":
            return None
        if kind == "sqlite":
            from tongban.settings import load

            return SqliteCache(path=str(load().home / "zeep-wsdl-cache.db"), timeout=3600)
        return InMemoryCache(timeout=3600)

    def _wsse(self):
        auth = self.settings.get("auth") or {}
        if auth.get("type") != "wsse":
            return None
        from zeep.wsse.username import UsernameToken

        return UsernameToken(_env(auth.get("username_env"), self.system, "username"),
                             _env(auth.get("password_env"), self.system, "password"))

    def client(self) -> zeep.Client:
        if self._client is None:
            auth_type = (self.settings.get("auth") or {}).get("type", "basic")
            if auth_type not in ("basic", "wsse"):
                raise SourceError(self.system, f"auth.type must be basic or wsse, got {auth_type!r}")
            transport = self._transport()
            self._client = self._retrying("loading the WSDL", lambda: zeep.Client(
                self.settings["wsdl"], transport=transport, wsse=self._wsse(), settings=safexml.zeep_settings(),
                service_name=self.settings.get("service"), port_name=self.settings.get("port"),
            ))
            try:
                self._operation = getattr(self._client.service, self.operation_name)
            except AttributeError:
                raise SourceError(self.system, f"the WSDL has no operation {self.operation_name!r} "
                                               f"(has: {', '.join(_operation_names(self._client))})") from None
        return self._client

    # --- calls ---------------------------------------------------------------------------------
    def _classify(self, exc: Exception, what: str) -> Exception:
        """Turn a zeep/requests error into a retryable marker or a permanent SourceError."""
        if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
            return _RetryableCall(f"{type(exc).__name__} while {what}: {exc}")
        if isinstance(exc, Fault):
            code = exc.code or "unknown"
            # The fault's <detail> (already parsed by zeep, hardened) as a dict: lxml, see docs/design-notes.md.
            detail = f"; detail {json.dumps(element_to_dict(exc.detail), ensure_ascii=False)[:300]}" \
                if exc.detail is not None and len(exc.detail) else ""
            return SourceError(self.system, f"SOAP fault from operation {self.operation_name} (fault code {code}): "
                                            f"{exc.message}{detail}")
        if isinstance(exc, TransportError):
            status = exc.status_code
            if status in (401, 403):
                return SourceError(self.system, f"authentication failed (HTTP {status}) while {what}: check the "
                                                "credentials named by auth.username_env / auth.password_env")
            if status in TRANSIENT_STATUS:
                return _RetryableCall(f"HTTP {status} while {what}")
            return SourceError(self.system, f"HTTP {status} while {what}: {str(exc)[:300]}")
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status in TRANSIENT_STATUS:
                return _RetryableCall(f"HTTP {status} while {what}",
                                      retry_after_seconds(exc.response.headers.get("Retry-After")))
            if status in (401, 403):
                return SourceError(self.system, f"authentication failed (HTTP {status}) while {what}: check the "
                                                "credentials named by auth.username_env / auth.password_env")
            return SourceError(self.system, f"HTTP {status} while {what}")
        if isinstance(exc, (DTDForbidden, EntitiesForbidden)):
            return SourceError(self.system, f"hostile XML refused while {what}: {type(exc).__name__}")
        if isinstance(exc, (XMLSyntaxError, safexml.XMLRejected)):
            return SourceError(self.system, f"unreadable XML while {what}: {exc}")
        if isinstance(exc, (ValueError, TypeError)) and what.startswith("calling"):
            return SourceError(self.system, f"bad request for {self.operation_name}: {exc}")
        return exc

    def _retrying(self, what: str, call):
        def attempt():
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - classified just below
                classified = self._classify(exc, what)
                if classified is exc:
                    raise
                raise classified from exc

        def noted(exc: BaseException, attempt_number: int, wait: float) -> None:
            log.warning("%s: %s (attempt %d of %d), retrying", self.system, exc, attempt_number, self._attempts)

        try:
            return self._policy.call(attempt, retry_if=lambda e: isinstance(e, _RetryableCall), before_sleep=noted)
        except _RetryableCall as exc:
            raise TransientSourceError(self.system, f"{exc.description} (gave up after "
                                                    f"{getattr(exc, 'attempts', self._attempts)} attempts)") from exc

    def _call(self, params: dict[str, Any], page: int | None) -> Any:
        self.client()
        where = f"calling {self.operation_name}" + (f" page {page}" if page is not None else "")
        return self._retrying(where, lambda: self._operation(**params))

    # --- the seam ------------------------------------------------------------------------------
    def fetch(self, watermark: str | None) -> Iterator[RawRecord]:
        params = dict(self.settings.get("params") or {})
        watermark_param = self.settings.get("watermark_param")
        if watermark and watermark_param:
            params[watermark_param] = watermark
        paging = self.settings.get("paging") or None
        records_path = self.settings.get("records_path", "")
        watermark_field = self.settings.get("watermark_field")
        self.high_watermark = watermark
        page = int(paging.get("start", 1)) if paging else None
        size = int(paging.get("size", 100)) if paging else None
        while True:
            if paging:
                params[paging.get("page_param", "PageNo")] = page
                params[paging.get("size_param", "PageSize")] = size
            response = self._call(params, page)
            records = _walk(serialize_object(response, dict), records_path, self.system, self.operation_name)
            for index, item in enumerate(records, start=1):
                data = _plain(item) if isinstance(item, dict) else {"value": _plain(item)}
                meta: dict[str, Any] = {"page": page, "index": index} if paging else {"index": index}
                if watermark_field and data.get(watermark_field) is not None:
                    meta["watermark"] = str(data[watermark_field])
                    if self.high_watermark is None or meta["watermark"] > self.high_watermark:
                        self.high_watermark = meta["watermark"]
                position = (f"{self.operation_name} page {page} record {index}" if paging
                            else f"{self.operation_name} record {index}")
                yield RawRecord(data=data, position=position, meta=meta)
            if not paging or len(records) < size:
                return
            page += 1

    def describe(self) -> dict[str, Any]:
        return describe(self.settings, system=self.system, **self.seams)

    def close(self) -> None:
        if self._client is not None:
            self._client.transport.session.close()
            self._client = None


def _operation_names(client: zeep.Client) -> list[str]:
    return sorted(client.service._binding._operations)  # zeep keeps no public list on the service proxy


def _type_fields(xsd_type) -> list[dict[str, Any]]:
    fields = []
    for name, element in getattr(xsd_type, "elements", []):
        fields.append({
            "name": name,
            "type": element.type.qname.localname if getattr(element.type, "qname", None) else type(element.type).__name__,
            "required": element.min_occurs > 0,
            "repeated": element.max_occurs == "unbounded" or (isinstance(element.max_occurs, int) and element.max_occurs > 1),
        })
    return fields


def describe(settings: dict[str, Any], *, system: str = "soap", **seams: Any) -> dict[str, Any]:
    """What the WSDL offers: every service/port/operation with its input fields, and the fields of the
    records found at `records_path` in the chosen operation's response (for writing a mapping file)."""
    adapter = SoapAdapter(system, {"operation": settings.get("operation") or "?", **settings}, **seams)
    try:
        client = adapter._retrying("loading the WSDL", lambda: zeep.Client(
            settings["wsdl"], transport=adapter._transport(), settings=safexml.zeep_settings()))
        services: dict[str, Any] = {}
        for service in client.wsdl.services.values():
            for port in service.ports.values():
                ops = {}
                for name, op in sorted(port.binding._operations.items()):
                    ops[name] = {
                        "input": _type_fields(op.input.body.type) if op.input and op.input.body is not None else [],
                        "output": _type_fields(op.output.body.type) if op.output and op.output.body is not None else [],
                    }
                services.setdefault(service.name, {})[port.name] = {"address": port.binding_options.get("address"),
                                                                    "operations": ops}
        result: dict[str, Any] = {"wsdl": settings["wsdl"], "services": services}
        operation = settings.get("operation")
        if operation:
            binding = client.service._binding
            if operation not in binding._operations:
                raise SourceError(system, f"the WSDL has no operation {operation!r} (has: {', '.join(_operation_names(client))})")
            xsd_type = binding._operations[operation].output.body.type
            path = [p for p in (settings.get("records_path") or "").split(".") if p]
            for part in path:
                element = dict(getattr(xsd_type, "elements", [])).get(part)
                if element is None:
                    raise SourceError(system, f"records_path {settings['records_path']!r}: no element {part!r} in the response type")
                xsd_type = element.type
            result["operation"] = operation
            result["records_path"] = settings.get("records_path", "")
            result["record_fields"] = _type_fields(xsd_type)
        return result
    finally:
        adapter.close()
