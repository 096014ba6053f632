"""The declared settings of the REST adapter: the `source:` section of a mapping file, without its `adapter` key.

`RestSettings.model_validate(section)` is what `tongban mapping check` and the adapter itself run; every field
has a description and the models carry examples, so `RestSettings.model_json_schema()` is the reference.
Secrets never appear here: only the names of environment variables (`*_env`) or an Airflow Connection (`conn_id`).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tongban.retry import RetrySettings

Scalar = Union[str, int, float, bool]


def _check_jmespath(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        jmespath.compile(value)
    except JMESPathError as exc:
        raise ValueError(f"not a valid JMESPath expression: {' '.join(str(exc).split())}") from None
    return value


def _jmespath(*names: str):
    """A validator that compiles the named settings as JMESPath (an error names the setting)."""
    return field_validator(*names)(classmethod(lambda cls, value: _check_jmespath(value)))


def _strict(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


# --- auth ---------------------------------------------------------------------------------------------------

def _credentials_from(what: str, *env_names: str):
    """A check that the credentials come from somewhere: every one of the `*_env` settings named, or conn_id."""
    def check(self):
        if not (all(getattr(self, name) for name in env_names) or self.conn_id):
            raise ValueError(f"{what} needs {' and '.join(env_names)} (or conn_id)")
        return self
    return model_validator(mode="after")(check)


class NoAuth(BaseModel):
    model_config = _strict({"type": "none"})
    type: Literal["none"] = Field(description="No credentials.")


class BearerAuth(BaseModel):
    model_config = _strict({"type": "bearer", "token_env": "CQ_SAMR_TOKEN"}, {"type": "bearer", "conn_id": "cq_samr"})
    type: Literal["bearer"] = Field(description="A fixed token sent as `Authorization: Bearer <token>`.")
    token_env: str | None = Field(None, description="Environment variable holding the token.")
    conn_id: str | None = Field(None, description="Airflow Connection whose password is the token (instead of token_env).")

    _source = _credentials_from("bearer auth", "token_env")


class BasicAuth(BaseModel):
    model_config = _strict({"type": "basic", "username_env": "CQ_X_USER", "password_env": "CQ_X_PASSWORD"})
    type: Literal["basic"] = Field(description="HTTP basic authentication.")
    username_env: str | None = Field(None, description="Environment variable holding the user name.")
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    conn_id: str | None = Field(None, description="Airflow Connection giving login and password (instead of the *_env).")

    _source = _credentials_from("basic auth", "username_env", "password_env")


class ApiKeyAuth(BaseModel):
    model_config = _strict({"type": "api_key", "header": "X-API-Key", "key_env": "CQ_X_KEY"})
    type: Literal["api_key"] = Field(description="A fixed key sent in a header.")
    header: str = Field("X-API-Key", description="The header that carries the key.")
    key_env: str | None = Field(None, description="Environment variable holding the key.")
    conn_id: str | None = Field(None, description="Airflow Connection whose password is the key (instead of key_env).")

    _source = _credentials_from("api_key auth", "key_env")


class LoginAuth(BaseModel):
    model_config = _strict({
        "type": "login", "url": "/auth/login", "body": {"username": "cl_sync", "password_env": "CQ_CL_PASSWORD"},
        "token_path": "result.token", "header": "X-Auth-Token", "expires_in_path": "result.expiresIn"})
    type: Literal["login"] = Field(description="Log in with a request, then send the token it answers with.")
    url: str = Field(description="Login URL, relative to base_url or absolute (its own origin is allowed).")
    method: Literal["POST", "GET", "PUT"] = Field("POST", description="HTTP method of the login request.")
    body: dict[str, Scalar] = Field(default_factory=dict, description=(
        "Login body. A key `<name>_env: VAR` sends `<name>` with the value of environment variable VAR; "
        "`<name>_conn: login|password` sends `<name>` from the Airflow Connection named by conn_id."))
    body_format: Literal["json", "form"] = Field("json", description="How the body is sent: JSON or a form.")
    token_path: str = Field(description="JMESPath to the token in the login answer, e.g. result.token.")
    header: str = Field("Authorization", description="Header that carries the token on every data request.")
    prefix: str | None = Field(None, description=(
        "Text before the token in that header. Default: 'Bearer ' for Authorization, nothing for other headers."))
    expires_in_path: str | None = Field(None, description="JMESPath to the token's lifetime in seconds in the answer.")
    expires_in: float | None = Field(None, gt=0, description=(
        "Token lifetime in seconds when the answer does not say (no value: until a 401 or a reauth answer)."))
    refresh_before_seconds: float = Field(30, ge=0, description="Log in again this long before the token expires.")
    success: str | None = Field(None, description=(
        "JMESPath that is true for a successful login answer (default: the token is there)."))
    conn_id: str | None = Field(None, description="Airflow Connection for the `*_conn` body values.")

    check_jmespath = _jmespath("token_path", "expires_in_path", "success")

    @model_validator(mode="after")
    def _conn(self):
        if any(k.endswith("_conn") for k in self.body) and not self.conn_id:
            raise ValueError("body values named *_conn need conn_id")
        return self


class OAuth2Auth(BaseModel):
    model_config = _strict({"type": "oauth2", "token_url": "/oauth/token", "client_id_env": "CQ_X_CLIENT_ID",
                            "client_secret_env": "CQ_X_CLIENT_SECRET", "scope": "cases.read"})
    type: Literal["oauth2"] = Field(description="OAuth2 client credentials grant; the access token goes in Authorization: Bearer.")
    token_url: str = Field(description="Token endpoint, relative to base_url or absolute.")
    client_id_env: str | None = Field(None, description="Environment variable holding the client id.")
    client_secret_env: str | None = Field(None, description="Environment variable holding the client secret.")
    conn_id: str | None = Field(None, description="Airflow Connection giving client id (login) and secret (password).")
    scope: str | None = Field(None, description="Requested scope, space separated.")
    client_auth: Literal["basic", "body"] = Field("basic", description=(
        "How the client authenticates: HTTP basic (RFC 6749 default) or client_id/client_secret in the form body."))
    refresh_before_seconds: float = Field(30, ge=0, description="Ask for a new token this long before expiry.")

    _source = _credentials_from("oauth2", "client_id_env", "client_secret_env")


Auth = Annotated[Union[NoAuth, BearerAuth, BasicAuth, ApiKeyAuth, LoginAuth, OAuth2Auth], Field(discriminator="type")]


# --- pagination ---------------------------------------------------------------------------------------------

def _query_param(default: str, what: str) -> Any:
    """A setting naming the query parameter that carries `what`."""
    return Field(default, description=f"Query parameter of the {what}.")


def _size(description: str = "Records per page asked for.") -> Any:
    """The number of records one request asks for, bounded alike in every paged style."""
    return Field(100, ge=1, le=100_000, description=description)


class _Paged(BaseModel):
    total_path: str | None = Field(None, description=(
        "JMESPath to the total number of records the server says the query has (e.g. result.totalCount). "
        "Fewer records fetched than that fails the run; a short page while more remain is a capped page size."))
    check_jmespath = _jmespath("total_path")


class NoPages(BaseModel):
    model_config = _strict({"style": "none"})
    style: Literal["none"] = Field(description="One request answers everything.")


class PagePages(_Paged):
    model_config = _strict({"style": "page", "page_param": "pageNo", "size_param": "pageSize", "size": 100,
                            "total_path": "result.totalCount"})
    style: Literal["page"] = Field(description="Numbered pages.")
    page_param: str = _query_param("page", "page number")
    size_param: str = _query_param("size", "page size")
    size: int = _size()
    start: int = Field(1, ge=0, description="Number of the first page.")


class OffsetPages(_Paged):
    model_config = _strict({"style": "offset", "offset_param": "offset", "limit_param": "limit", "size": 200})
    style: Literal["offset"] = Field(description="Offset and limit.")
    offset_param: str = _query_param("offset", "offset")
    limit_param: str = _query_param("limit", "limit")
    size: int = _size("Records per request asked for.")
    start: int = Field(0, ge=0, description="The first offset.")


class CursorPages(_Paged):
    model_config = _strict({"style": "cursor", "cursor_param": "cursor", "cursor_path": "next_cursor", "size": 200})
    style: Literal["cursor"] = Field(description="An opaque cursor from each answer asks for the next page.")
    cursor_param: str = Field("cursor", description="Query parameter that carries the cursor.")
    cursor_path: str = Field("next_cursor", description="JMESPath to the next cursor in the answer (empty: last page).")
    size_param: str = _query_param("size", "page size")
    size: int = _size()
    check_jmespath = _jmespath("cursor_path")


class LinkPages(_Paged):
    model_config = _strict({"style": "link"}, {"style": "link", "next_path": "links.next"})
    style: Literal["link"] = Field(description=(
        "The next page's URL comes from the Link header (rel=next) or from the body; followed to the same origin only."))
    next_path: str | None = Field(None, description="JMESPath to the next URL in the body (default: the Link header).")
    check_jmespath = _jmespath("next_path")


class WatermarkPages(BaseModel):
    model_config = _strict({"style": "watermark", "size_param": "pageSize", "size": 100, "field": "gxsj"})
    style: Literal["watermark"] = Field(description=(
        "Keyset pages: each next page asks the incremental parameter from the newest `field` of the page before "
        "(minus step_back_seconds, so that records sharing that second are not lost; the ones seen already are "
        "skipped). Needs incremental with format."))
    size_param: str = _query_param("size", "page size")
    size: int = _size("Records per page asked for; more records than this sharing one second fail the run (raise it).")
    field: str = Field(description="JMESPath to each record's watermark value (as incremental.format writes it).")
    step_back_seconds: int = Field(1, ge=0, le=86400, description=(
        "How far before the newest value the next page asks from: 1 for a server comparing exclusively (>), "
        "0 for one comparing inclusively (>=)."))
    check_jmespath = _jmespath("field")


Pagination = Annotated[Union[NoPages, PagePages, OffsetPages, CursorPages, LinkPages, WatermarkPages],
                       Field(discriminator="style")]


# --- envelope, incremental, limits ----------------------------------------------------------------------------

class Envelope(BaseModel):
    model_config = _strict({"success": "code == '0000'", "retry": "code == '9999'", "reauth": "code == '4011'",
                            "message": "msg"})
    success: str = Field(description="JMESPath, true when an answer is a success (records follow).")
    retry: str | None = Field(None, description="JMESPath, true for a 'busy, try again' answer: retried with backoff.")
    reauth: str | None = Field(None, description="JMESPath, true for an 'expired token' answer: log in again, once.")
    message: str | None = Field(None, description="JMESPath to the legacy system's message, quoted in errors.")
    check_jmespath = _jmespath("success", "retry", "reauth", "message")


class Incremental(BaseModel):
    model_config = _strict({"param": "updated_since"},
                           {"param": "gxsjStart", "format": "%Y%m%d%H%M%S", "overlap_seconds": 600})
    param: str = Field(description="Query parameter that receives the watermark (omitted on a first full fetch).")
    format: str | None = Field(None, description=(
        "strftime format of the watermark values, as the records carry them and the parameter wants them "
        "(needed for overlap_seconds). Without it the watermark is sent as stored."))
    overlap_seconds: int = Field(0, ge=0, le=30 * 86400, description=(
        "Ask from the watermark minus this many seconds: records written late within the same second (ties) "
        "are not lost; the ones fetched again unchanged are dropped by change detection."))

    @model_validator(mode="after")
    def _format(self):
        if self.overlap_seconds and not self.format:
            raise ValueError("overlap_seconds needs format (how the watermark is written, e.g. '%Y%m%d%H%M%S')")
        return self


class Limits(BaseModel):
    model_config = _strict({"max_response_bytes": 16777216, "call_deadline_seconds": 60,
                            "run_deadline_seconds": 3600, "max_pages": 10000, "max_json_depth": 64})
    max_response_bytes: int = Field(16 * 1024 * 1024, ge=1024, description=(
        "Largest response body read (after decompression); a larger one fails the run."))
    call_deadline_seconds: float = Field(60, gt=0, description=(
        "Total time for one request, connect to last byte (a slow drip counts); retried like a timeout."))
    run_deadline_seconds: float = Field(3600, gt=0, description="Total time for one fetch, every page and retry.")
    max_pages: int = Field(10_000, ge=1, description="Most pages one fetch reads; more fails the run.")
    max_json_depth: int = Field(64, ge=2, le=500, description="Deepest nesting of JSON accepted in an answer.")
    max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed per request (same origin only).")


class RestSettings(BaseModel):
    """The `source:` section of a REST mapping (without `adapter: rest`)."""

    model_config = _strict(
        {"base_url": "http://127.0.0.1:8701", "path": "/api/cases", "auth": {"type": "bearer", "token_env": "CQ_SAMR_TOKEN"},
         "pagination": {"style": "page", "page_param": "page", "size_param": "size", "size": 200},
         "incremental": {"param": "updated_since"}, "records_path": "data.items", "timeout": 10,
         "retry": {"attempts": 5, "initial_wait": 0.5, "max_wait": 30}})

    base_url: str = Field(description="Scheme, host and port of the legacy API; links are followed only to this origin.")
    path: str = Field("", description="Path of the records endpoint, relative to base_url.")
    params: dict[str, Scalar] = Field(default_factory=dict, description="Constant query parameters.")
    records_path: str = Field("@", description="JMESPath to the list of records in each answer.")
    auth: Auth = Field(default_factory=lambda: NoAuth(type="none"), description="How to authenticate (by `type`).")
    pagination: Pagination = Field(default_factory=lambda: NoPages(style="none"), description="How pages go (by `style`).")
    envelope: Envelope | None = Field(None, description="Success/error codes inside HTTP 200 answers.")
    incremental: Incremental | None = Field(None, description="Fetch only records changed since the watermark.")
    timeout: float = Field(10, gt=0, description="Seconds to wait for connecting and for each read.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retries of transient failures.")
    limits: Limits = Field(default_factory=Limits, description="Bounds on what the legacy system may send.")

    check_jmespath = _jmespath("records_path")

    @model_validator(mode="after")
    def _keyset_needs_incremental(self):
        if isinstance(self.pagination, WatermarkPages) and not (self.incremental and self.incremental.format):
            raise ValueError("pagination style watermark needs incremental with param and format")
        return self

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        # A `${VAR:-default}` not expanded yet (a check of the raw file) is judged after expansion.
        if not value.startswith(("http://", "https://", "${")):
            raise ValueError("base_url must start with http:// or https://")
        return value
