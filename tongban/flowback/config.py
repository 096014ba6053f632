"""Configuration of flowback (data, no secrets): functional zones and municipal levels (routing), district
sinks and their redelivery policy. A source file (tongban.flowback.mapping) names both, inline or as a path
relative to itself. `${NAME}` / `${NAME:-default}` in text values are taken from the environment, so URLs and
directories can differ per deployment; tokens are only ever named (`token_env`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tongban.codes import CHONGQING_CODE, CHONGQING_UNITS
from tongban.delivery.retry import RedeliveryPolicy
from tongban.settings import environment_value

CITY = "city"  # the target of 500000 and of municipal-level (市级部门) records
TARGETS = [*CHONGQING_UNITS, CITY]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class FlowbackConfigError(ValueError):
    pass


class _Strict(BaseModel):
    """Configuration models refuse unknown keys: a misspelt key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV.sub(lambda m: environment_value(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _check_target(value: str) -> str:
    value = str(value).strip()
    if value == CHONGQING_CODE:
        return CITY
    if value != CITY and value not in CHONGQING_UNITS:
        raise ValueError(f"{value!r} is neither 'city' nor one of Chongqing's 38 county-level codes")
    return value


class Zone(_Strict):
    """A functional zone (功能区, e.g. 两江新区): no GB/T 2260 code, so where its records go is configuration."""
    code: str
    name: str
    route_to: str

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        v = str(v).strip()
        if not (v.isdigit() and len(v) == 6):
            raise ValueError("a zone code is the 6-digit code ministry systems use for it")
        return v

    @field_validator("route_to")
    @classmethod
    def _target(cls, v: str) -> str:
        return _check_target(v)


class RoutingConfig(_Strict):
    zones: list[Zone] = Field(default_factory=list)
    # 行使层级 (character 19 of the 实施编码) of municipal bodies: their records go to the city queue.
    municipal_levels: list[str] = Field(default_factory=lambda: ["2"])

    def zone_map(self) -> dict[str, Zone]:
        return {z.code: z for z in self.zones}


class RestSinkConfig(_Strict):
    kind: Literal["rest"]
    url: str  # `{code}` is replaced by the target ("500101" … or "city")
    timeout: float = 10.0
    token_env: str | None = None  # bearer token from this environment variable, if the district wants one


class FileSinkConfig(_Strict):
    kind: Literal["file"]
    directory: str  # `{code}` is replaced by the target


SinkConfig = Union[RestSinkConfig, FileSinkConfig]


class RetryConfig(_Strict):
    max_attempts: int = 5
    initial_delay: float = 1.0
    max_delay: float = 120.0

    def policy(self) -> RedeliveryPolicy:
        """The one retry policy (tongban.retry: backoff with its jitter, cap, Retry-After as a floor)."""
        return RedeliveryPolicy(self.max_attempts, self.initial_delay, self.max_delay)


class SinksConfig(_Strict):
    default: SinkConfig | None = Field(default=None, discriminator="kind")
    targets: dict[str, SinkConfig] = Field(default_factory=dict)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {_check_target(k): s for k, s in v.items()}
        return v

    def for_target(self, target: str) -> SinkConfig:
        sink = self.targets.get(target) or self.default
        if sink is None:
            raise FlowbackConfigError(f"no sink configured for {target} and no default sink")
        return sink


def include_section(value: Any, base: Path | None, what: str) -> Any:
    """A section given inline, or as a string: a path (relative to the source file) to a YAML file holding it.
    `${NAME}` / `${NAME:-default}` in the included file are expanded."""
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            return _expand(yaml.safe_load(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise FlowbackConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise FlowbackConfigError(f"{what}: {path} is not valid YAML: {exc}") from None
    return value


def load_sinks_config(path: "str | os.PathLike") -> SinksConfig:
    """The district sink configuration on its own (for `tongban flowback deliver`)."""
    data = include_section(str(path), None, "district sink config")
    try:
        return SinksConfig.model_validate(data or {})
    except ValidationError as exc:
        raise FlowbackConfigError(f"{path}: {exc}") from None
