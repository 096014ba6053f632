"""SOAP submitter: a bundle member's application sent through one WSDL operation (zeep), declared in the mapping.

    submit:
      adapter: soap
      wsdl: ${CQ_BUNDLE_DEPTS_URL:-http://127.0.0.1:8711}/swj/soap?wsdl
      operation: SubmitApplication
      auth: {type: basic, username_env: CQ_SWJ_USER, password_env: CQ_BUNDLE_TOKEN}   # or wsse
      reference_param: Reference        # the request parameter carrying tongban's reference
      item_param: ItemCode              # … the 实施编码
      fields_param: Fields              # … the form fields, as Fields/Field{Name, Value}* (a name/value list)
      code_path: Code                   # dotted path to the answer's result code
      success_codes: ["0"]              # codes that mean "taken"; busy_codes are retried; any other is a refusal
      busy_codes: ["9999"]
      message_path: Message
      key_path: CaseKey                 # dotted path to the department's case key
      timeout: 10
      retry: {attempts: 4, initial_wait: 0.2, max_wait: 2}

The WSDL, transport, auth, retry and the hardened XML parsing are the SOAP fetch side's (adapters/soap.py): timeouts,
connection errors and transient HTTP statuses are retried and then a TransientSourceError; SOAP faults, HTTP 401/403,
DTDs and entities, unreadable XML are permanent SourceErrors. A refusal code quotes the department's message; an answer
without a usable key (missing, huge, or not plain text) is refused. The reference makes a resubmission idempotent: the
department answers the key of the case it opened the first time.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field
from zeep.helpers import serialize_object

from adapters.base import SourceError
from adapters.settings import Configured
from adapters.soap import SoapAdapter, _RetryableCall
from adapters.soap_settings import SoapSettings
from adapters.submit import SubmitReceipt, Submission, Submitter, checked_key

_OWN = ("reference_param", "item_param", "fields_param", "code_path", "success_codes", "busy_codes", "message_path",
        "key_path")


class SoapSubmitSettings(SoapSettings):
    """The `submit:` section of a SOAP department (without `adapter: soap`)."""

    operation: str = Field(min_length=1, description="The operation that takes an application.")
    reference_param: str = Field("Reference", description="Request parameter carrying tongban's reference.")
    item_param: str = Field("ItemCode", description="Request parameter carrying the 实施编码.")
    fields_param: str = Field("Fields", description="Request parameter carrying the form fields as Field{Name, Value}*.")
    code_path: str = Field("Code", description="Dotted path to the answer's result code.")
    success_codes: list[str] = Field(default_factory=lambda: ["0"], description="Result codes meaning taken.")
    busy_codes: list[str] = Field(default_factory=list, description="Result codes meaning busy: retried.")
    message_path: str = Field("Message", description="Dotted path to the department's message, quoted in errors.")
    key_path: str = Field("CaseKey", description="Dotted path to the department's case key in the answer.")


def _at(answer: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        if not isinstance(answer, dict):
            return None
        answer = answer.get(part)
    return answer


class SoapSubmitter(Configured, Submitter):
    kind = "soap"
    settings_model = SoapSubmitSettings

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)  # Configured: self.config, a SoapSubmitSettings
        self.soap = SoapAdapter(system, {k: v for k, v in settings.items() if k not in _OWN}, **seams)

    def submit(self, submission: Submission) -> SubmitReceipt:
        cfg = self.config
        params = {cfg.reference_param: submission.reference, cfg.item_param: submission.item_code,
                  cfg.fields_param: {"Field": [{"Name": str(name), "Value": None if value is None else str(value)}
                                               for name, value in submission.fields.items()]}}
        self.soap.client()
        what = f"calling {cfg.operation} ({submission.reference})"

        def call() -> Any:
            answer = serialize_object(self.soap._operation(**params), dict)
            code = str(_at(answer, cfg.code_path))
            if code in cfg.busy_codes:
                raise _RetryableCall(f"{cfg.operation} answered busy (code {code})")
            return answer

        answer = self.soap._retrying(what, call)
        code = str(_at(answer, cfg.code_path))
        if code not in cfg.success_codes:
            message = _at(answer, cfg.message_path)
            raise SourceError(self.system, f"{what}: {self.system} refused the submission (code {code}): "
                                           f"{str(message)[:200]!r}")
        key = checked_key(self.system, _at(answer, cfg.key_path), f"{what}: key_path {cfg.key_path!r}")
        return SubmitReceipt(key, {"operation": cfg.operation})

    def close(self) -> None:
        self.soap.close()
