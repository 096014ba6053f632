"""Settings every command reads the same way (environment first, embedded defaults second).

The embedded defaults let a newcomer run everything on one machine with no configuration:
state and ledger in SQLite under TONGBAN_HOME, RabbitMQ when one answers, in-process bus otherwise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(_env("TONGBAN_HOME", ".tongban")).resolve())
    db_url_override: str | None = field(default_factory=lambda: _env("TONGBAN_DB_URL"))
    amqp_url: str = field(default_factory=lambda: _env("TONGBAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    # "auto" (RabbitMQ if it answers, else in-process), "rabbitmq" or "inprocess".
    bus: str = field(default_factory=lambda: _env("TONGBAN_BUS", "auto"))
    platform_url: str = field(default_factory=lambda: _env("TONGBAN_PLATFORM_URL", "http://127.0.0.1:8700"))
    platform_access_key: str = field(default_factory=lambda: _env("TONGBAN_PLATFORM_ACCESS_KEY", "sandbox-access-key"))
    # The sandbox platform's secret is a sandbox value; production sets TONGBAN_PLATFORM_SECRET.
    platform_secret: str = field(default_factory=lambda: _env("TONGBAN_PLATFORM_SECRET", "sandbox-secret-not-for-production"))
    mappings_dir: Path = field(default_factory=lambda: Path(_env("TONGBAN_MAPPINGS", "mappings")).resolve())
    # Key for keyed hashes of personal identifiers (HMAC); sandbox default, production sets it.
    pii_key: str = field(default_factory=lambda: _env("TONGBAN_PII_KEY", "sandbox-pii-key-not-for-production"))
    # Prefix of every exchange and queue name: parallel environments on one broker keep apart.
    queue_prefix: str = field(default_factory=lambda: _env("TONGBAN_QUEUE_PREFIX", "tongban"))
    # Largest legacy record kept whole in quarantine; a larger one keeps its head, size and SHA-256 (bytes).
    quarantine_max_record_bytes: int = field(
        default_factory=lambda: int(_env("TONGBAN_QUARANTINE_MAX_RECORD_BYTES", str(1024 * 1024))))

    @property
    def db_url(self) -> str:
        if self.db_url_override:
            return self.db_url_override
        return f"sqlite:///{self.home / 'tongban.db'}"


def load() -> Settings:
    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings
