"""Settings every command reads the same way (environment first, embedded defaults second).

This module is the one reader of tongban's environment. An entry point (a CLI command, an Airflow task, a
benchmark) calls `load()` once and passes the `Settings` down; code that has no settings handed to it (encryption
at rest, for one) asks `current()`, the settings this process loaded last, instead of reading the environment again.

`TONGBAN_ENV` says where we run:
- `sandbox` (the default): the embedded defaults let a newcomer run everything on one machine with no configuration
  (state and ledger in SQLite under TONGBAN_HOME, RabbitMQ when one answers, in-process bus otherwise); the secrets
  fall back to public sandbox values, and one line on stderr says so, once per process;
- `production`: no secret has a default. A missing (or sandbox-valued) TONGBAN_PLATFORM_SECRET or TONGBAN_PII_KEY,
  or a platform URL that is not https (unless TONGBAN_ALLOW_HTTP_PLATFORM=1), is a `SettingsError` naming the
  variable — a start-up error, before anything is read or sent.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

SANDBOX, PRODUCTION = "sandbox", "production"
ENVIRONMENTS = (SANDBOX, PRODUCTION)
# Public values, known to everyone who has read this file: fit for the sandbox only.
SANDBOX_PLATFORM_SECRET = "sandbox-secret-not-for-production"
SANDBOX_PII_KEY = "sandbox-pii-key-not-for-production"
SANDBOX_CONSOLE_SECRET = "sandbox-console-secret-not-for-production"
_SECRETS = {  # field → (variable, sandbox value)
    "platform_secret": ("TONGBAN_PLATFORM_SECRET", SANDBOX_PLATFORM_SECRET),
    "pii_key": ("TONGBAN_PII_KEY", SANDBOX_PII_KEY),
}


class SettingsError(ValueError):
    """The configuration cannot be used; the message is one line naming the variable and what to do."""


def environment_value(name: str) -> str | None:
    """One variable of the process environment, as it is (None when unset). The one place that reads the
    environment besides the settings below: mapping and flowback files name the variables that hold a legacy
    system's secrets (`token_env`, `password_env`, `${VAR}`), so those are looked up here too."""
    return os.environ.get(name)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _path(name: str) -> Path | None:
    value = _env(name)
    return Path(value) if value else None


CHECKOUT_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def default_mappings_dir() -> Path:
    """The one default of the mapping folder: TONGBAN_MAPPINGS, else `mappings/` in the working directory when
    there is one, else the checkout's `mappings/` beside the package (Airflow's working directory is arbitrary)."""
    configured = _env("TONGBAN_MAPPINGS")
    if configured:
        return Path(configured).resolve()
    here = Path("mappings")
    return here.resolve() if here.is_dir() else CHECKOUT_MAPPINGS


_warned = False
_warn_lock = threading.Lock()


def debug_requested() -> bool:
    """TONGBAN_DEBUG=1: failures print their traceback too. Read here, apart from Settings, because a failure while
    loading the settings must be reportable as well."""
    return _env("TONGBAN_DEBUG", "0") not in ("", "0")


def _warn_sandbox_defaults(names: list[str]) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    # The process's own stderr: a command's captured output (its --json, say) stays clean.
    stream = sys.__stderr__ or sys.stderr
    print(f"tongban: sandbox mode: {', '.join(names)} not set, using the public sandbox values "
          f"(set TONGBAN_ENV=production to require real ones)", file=stream, flush=True)


@dataclass(frozen=True)
class Settings:
    env: str = field(default_factory=lambda: _env("TONGBAN_ENV", SANDBOX).strip().lower())
    home: Path = field(default_factory=lambda: Path(_env("TONGBAN_HOME", ".tongban")).resolve())
    db_url_override: str | None = field(default_factory=lambda: _env("TONGBAN_DB_URL"))
    amqp_url: str = field(default_factory=lambda: _env("TONGBAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    # "auto" (RabbitMQ if it answers, else in-process), "rabbitmq" or "inprocess".
    bus: str = field(default_factory=lambda: _env("TONGBAN_BUS", "auto"))
    platform_url: str = field(default_factory=lambda: _env("TONGBAN_PLATFORM_URL", "http://127.0.0.1:8700"))
    # Plain http to the platform outside the sandbox only when an operator says so (a TLS-terminating sidecar).
    allow_http_platform: bool = field(default_factory=lambda: _env("TONGBAN_ALLOW_HTTP_PLATFORM") == "1")
    platform_access_key: str = field(default_factory=lambda: _env("TONGBAN_PLATFORM_ACCESS_KEY", "sandbox-access-key"))
    # None here means "not set": __post_init__ puts the sandbox value in, or refuses in production.
    platform_secret: str | None = field(default_factory=lambda: _env("TONGBAN_PLATFORM_SECRET"), repr=False)
    mappings_dir: Path = field(default_factory=default_mappings_dir)
    # Key for keyed hashes of personal identifiers (HMAC) and for encryption at rest.
    pii_key: str | None = field(default_factory=lambda: _env("TONGBAN_PII_KEY"), repr=False)
    # Prefix of every exchange and queue name: parallel environments on one broker keep apart.
    queue_prefix: str = field(default_factory=lambda: _env("TONGBAN_QUEUE_PREFIX", "tongban"))
    # Largest legacy record kept whole in quarantine; a larger one keeps its head, size and SHA-256 (bytes).
    quarantine_max_record_bytes: int = field(default_factory=lambda: quarantine_max_record_bytes())
    # The sandbox CA / trust store folder (`tongban certs`, `tongban seal`); None: the commands' defaults.
    certs_dir: Path | None = field(default_factory=lambda: _path("TONGBAN_CERTS"))
    # The web console's cookie-signing key (`tongban console`); checked when the console starts, not by every command.
    console_secret: str | None = field(default_factory=lambda: _env("TONGBAN_CONSOLE_SECRET"), repr=False)
    # tongban's own audit key (审计签名), which signs ledger checkpoints and evidence packages (docs/audit.md):
    # a PEM private key and its certificate. Unset in the sandbox: the sandbox CA's audit key; required in production.
    audit_key: Path | None = field(default_factory=lambda: _path("TONGBAN_AUDIT_KEY"))
    audit_cert: Path | None = field(default_factory=lambda: _path("TONGBAN_AUDIT_CERT"))
    # Batch push (批量推送): with TONGBAN_PUSH_BATCH=1 the delivery worker groups its pushes into the platform's batch
    # calls when the platform offers them (its capabilities answer). Measured at ~1.4x the events for ~0.6x the CPU
    # per event (docs/performance.md, "Batch push against single push"), but still opt-in: once in four runs of the
    # chaos test a batch worker did not exit within 60 s of SIGTERM (4 December), and that is not understood yet.
    push_batch: bool = field(default_factory=lambda: _env("TONGBAN_PUSH_BATCH", "0").strip() not in ("", "0"))

    def __post_init__(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise SettingsError(f"TONGBAN_ENV must be {' or '.join(ENVIRONMENTS)}, not {self.env!r}")
        unset = [name for attr, (name, _) in _SECRETS.items() if not getattr(self, attr)]
        if self.env == PRODUCTION:
            public = [name for attr, (name, value) in _SECRETS.items() if getattr(self, attr) == value]
            if unset or public:
                problems = ([f"{', '.join(unset)} not set"] if unset else []) + \
                           ([f"{', '.join(public)} set to the public sandbox value"] if public else [])
                raise SettingsError(f"TONGBAN_ENV=production: {'; '.join(problems)} "
                                    f"(there are no default secrets outside the sandbox)")
        for attr, (_, value) in _SECRETS.items():
            if not getattr(self, attr):
                object.__setattr__(self, attr, value)  # frozen dataclass: filled in once, here
        scheme = urlsplit(self.platform_url).scheme.lower()
        if scheme not in ("http", "https"):
            raise SettingsError(f"TONGBAN_PLATFORM_URL must be an http(s) URL, not {self.platform_url!r}")
        if scheme == "http" and self.env != SANDBOX and not self.allow_http_platform:
            raise SettingsError(f"TONGBAN_PLATFORM_URL {self.platform_url} is plain http: outside the sandbox the "
                                f"platform must be reached over https (TONGBAN_ALLOW_HTTP_PLATFORM=1 allows http)")
        if unset and self.env == SANDBOX:
            _warn_sandbox_defaults(unset)

    @property
    def is_sandbox(self) -> bool:
        return self.env == SANDBOX

    def console_session_secret(self) -> str:
        """The key that signs the console's session cookies: TONGBAN_CONSOLE_SECRET, or in the sandbox its public
        value. Outside the sandbox a missing or public value is a SettingsError (the console refuses to start)."""
        if self.console_secret and (self.is_sandbox or self.console_secret != SANDBOX_CONSOLE_SECRET):
            return self.console_secret
        if self.is_sandbox:
            return SANDBOX_CONSOLE_SECRET
        problem = "not set" if not self.console_secret else "set to the public sandbox value"
        raise SettingsError(f"TONGBAN_ENV=production: TONGBAN_CONSOLE_SECRET {problem} (the console signs its "
                            f"session cookies with it; there are no default secrets outside the sandbox)")

    @property
    def db_url(self) -> str:
        if self.db_url_override:
            return self.db_url_override
        return f"sqlite:///{self.home / 'tongban.db'}"


_current: Settings | None = None
_current_lock = threading.Lock()


def quarantine_max_record_bytes() -> int:
    """`Settings.quarantine_max_record_bytes`, read alone: quarantine asks it for every record it stores, and building
    every setting (and TONGBAN_HOME) each time cost more than storing the record."""
    return int(_env("TONGBAN_QUARANTINE_MAX_RECORD_BYTES", str(1024 * 1024)))


def load() -> Settings:
    """Read the environment (once per entry point), create TONGBAN_HOME (0700) and make these the process's
    settings (`current()`). Raises SettingsError when the configuration cannot be used."""
    global _current
    from tongban.store.files import private_dir

    settings = Settings()
    private_dir(settings.home)
    with _current_lock:
        _current = settings
    return settings


def startup() -> Settings:
    """Check the configuration at a command's start (nothing created on disk) and make it the process's settings.
    Raises SettingsError (one line naming the variable) when it cannot be used."""
    global _current
    settings = Settings()
    with _current_lock:
        _current = settings
    return settings


def current() -> Settings:
    """The settings this process loaded last (loading them on first use): no environment read per call."""
    with _current_lock:
        settings = _current
    return settings if settings is not None else load()
