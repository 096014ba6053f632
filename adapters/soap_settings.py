"""The declared settings of the SOAP adapter: the `source:` section of a SOAP mapping, without `adapter: soap`."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tongban.retry import RetrySettings


class SoapPaging(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"page_param": "PageNo", "size_param": "PageSize", "size": 200, "start": 1}]})
    page_param: str = Field("PageNo", description="Request parameter of the page number.")
    size_param: str = Field("PageSize", description="Request parameter of the page size.")
    size: int = Field(100, ge=1, le=100_000, description="Records per page asked for; a shorter page is the last.")
    start: int = Field(1, ge=0, description="Number of the first page.")


class SoapAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"type": "basic", "username_env": "CQ_HRSS_USER", "password_env": "CQ_HRSS_PASSWORD"}]})
    type: Literal["basic", "wsse"] = Field("basic", description="HTTP basic, or a WS-Security UsernameToken.")
    username_env: str = Field(description="Environment variable holding the user name.")
    password_env: str = Field(description="Environment variable holding the password.")


class SoapSettings(BaseModel):
    """The `source:` section of a SOAP mapping."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "wsdl": "http://127.0.0.1:8702/hrss/CaseService?wsdl", "operation": "QueryCases",
        "watermark_param": "ModifiedAfter", "watermark_field": "ModifyTime",
        "paging": {"page_param": "PageNo", "size_param": "PageSize", "size": 200, "start": 1},
        "records_path": "Records.Record",
        "auth": {"type": "basic", "username_env": "CQ_HRSS_USER", "password_env": "CQ_HRSS_PASSWORD"},
        "timeout": 30, "retry": {"attempts": 5, "initial_wait": 0.5, "max_wait": 30}, "wsdl_cache": "memory"}]})

    wsdl: str = Field(min_length=1, description="URL or local path of the WSDL.")
    service: str | None = Field(None, description="Service name, when the WSDL has several.")
    port: str | None = Field(None, description="Port name, when the service has several.")
    operation: str = Field(min_length=1, description="The operation that lists records.")
    params: dict[str, Any] = Field(default_factory=dict, description="Constant request parameters.")
    watermark_param: str | None = Field(None, description="Request parameter that receives the watermark.")
    watermark_field: str | None = Field(None, description="Record field reported as each record's watermark.")
    paging: SoapPaging | None = Field(None, description="Page parameters; none: one call answers everything.")
    records_path: str = Field("", description="Dotted path to the records in the serialized answer.")
    auth: SoapAuth | None = Field(None, description="Credentials (names of environment variables).")
    timeout: float = Field(30, gt=0, description="Seconds per HTTP call.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retries of transient failures.")
    wsdl_cache: Literal["memory", "sqlite", "none"] = Field("memory", description=(
        "Where the parsed WSDL is cached: memory, sqlite ($TONGBAN_HOME/zeep-wsdl-cache.db) or none."))
