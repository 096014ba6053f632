"""One settings object: no default secret outside the sandbox, https to the platform, read once per process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tongban import settings as settings_module
from tongban.settings import SANDBOX_PII_KEY, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
TONGBAN = str(Path(sys.executable).with_name("tongban"))
SECRETS = {"TONGBAN_PLATFORM_SECRET": "a-real-platform-secret", "TONGBAN_PII_KEY": "a-real-pii-key"}


def _env(tmp_path, **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGBAN_")}
    env.update({"TONGBAN_HOME": str(tmp_path / "home"), **overrides})
    return env


def _tongban(args, env):
    return subprocess.run([TONGBAN, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("TONGBAN_"):
            monkeypatch.delenv(name)
    return monkeypatch


# ------------------------------------------------------------------------------------------ production


def test_production_without_secrets_is_a_one_line_start_up_error_through_the_cli(tmp_path):
    result = _tongban(["audit", "verify"], _env(tmp_path, TONGBAN_ENV="production"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TONGBAN_PLATFORM_SECRET" in lines[0] and "TONGBAN_PII_KEY" in lines[0]
    assert not (tmp_path / "home").exists()  # stopped before anything was created


def test_production_with_secrets_and_https_starts(tmp_path):
    env = _env(tmp_path, TONGBAN_ENV="production", TONGBAN_PLATFORM_URL="https://ykb.cq.gov.cn", **SECRETS)
    assert _tongban(["db", "upgrade"], env).returncode == 0  # an operator's first step on a new database
    result = _tongban(["audit", "verify"], env)
    assert result.returncode == 0, result.stderr
    assert "sandbox" not in result.stderr  # no sandbox warning in production
    assert "a-real" not in result.stdout + result.stderr  # secrets are never printed


def test_production_with_a_plain_http_platform_url_is_an_error_unless_allowed(tmp_path):
    env = _env(tmp_path, TONGBAN_ENV="production", TONGBAN_PLATFORM_URL="http://ykb.cq.gov.cn", **SECRETS)
    refused = _tongban(["audit", "verify"], env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "TONGBAN_PLATFORM_URL" in refused.stderr and "https" in refused.stderr
    assert _tongban(["db", "upgrade"], {**env, "TONGBAN_ALLOW_HTTP_PLATFORM": "1"}).returncode == 0
    allowed = _tongban(["audit", "verify"], {**env, "TONGBAN_ALLOW_HTTP_PLATFORM": "1"})
    assert allowed.returncode == 0, allowed.stderr


def test_a_missing_secret_is_named_alone(clean_env):
    clean_env.setenv("TONGBAN_ENV", "production")
    clean_env.setenv("TONGBAN_PLATFORM_URL", "https://ykb.example")
    clean_env.setenv("TONGBAN_PLATFORM_SECRET", "s")
    with pytest.raises(SettingsError, match="TONGBAN_PII_KEY not set") as error:
        Settings()
    assert "TONGBAN_PLATFORM_SECRET" not in str(error.value)


def test_the_public_sandbox_value_is_refused_in_production(clean_env):
    clean_env.setenv("TONGBAN_ENV", "production")
    clean_env.setenv("TONGBAN_PLATFORM_URL", "https://ykb.example")
    clean_env.setenv("TONGBAN_PLATFORM_SECRET", "s")
    clean_env.setenv("TONGBAN_PII_KEY", SANDBOX_PII_KEY)
    with pytest.raises(SettingsError, match="TONGBAN_PII_KEY set to the public sandbox value"):
        Settings()


def test_an_unknown_environment_name_is_refused(clean_env):
    clean_env.setenv("TONGBAN_ENV", "prod")
    with pytest.raises(SettingsError, match="TONGBAN_ENV must be sandbox or production"):
        Settings()


def test_a_platform_url_that_is_not_http_is_refused(clean_env):
    clean_env.setenv("TONGBAN_PLATFORM_URL", "ftp://ykb.example")
    with pytest.raises(SettingsError, match="must be an http"):
        Settings()


# ------------------------------------------------------------------------------------------ sandbox


def test_the_sandbox_warns_once_on_stderr_and_keeps_its_defaults(tmp_path):
    code = ("from tongban.settings import Settings\n"
            "a = Settings(); b = Settings()\n"
            "print(a.platform_secret == 'sandbox-secret-not-for-production', a.pii_key == b.pii_key)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["True", "True"]
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and "sandbox" in warnings[0]
    assert "TONGBAN_PLATFORM_SECRET" in warnings[0] and "TONGBAN_PII_KEY" in warnings[0]


def test_secrets_never_appear_in_the_settings_repr(clean_env):
    clean_env.setenv("TONGBAN_PLATFORM_SECRET", "hush-platform")
    clean_env.setenv("TONGBAN_PII_KEY", "hush-pii")
    shown = repr(Settings())
    assert "hush" not in shown


# ------------------------------------------------------------------------------------------ read once


def test_encryption_at_rest_reads_the_key_from_the_loaded_settings_not_the_environment(clean_env, tmp_path):
    from tongban.store.at_rest import protect, reveal

    clean_env.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    clean_env.setenv("TONGBAN_PII_KEY", "key-at-start")
    settings_module.load()
    stored = protect("张三 500103199001010123")
    clean_env.setenv("TONGBAN_PII_KEY", "key-changed-later")  # not re-read on every call
    assert reveal(stored) == "张三 500103199001010123"
    assert reveal(stored, key="key-at-start") == "张三 500103199001010123"
    settings_module.load()  # a new entry point reads the environment again
    with pytest.raises(Exception, match="another TONGBAN_PII_KEY"):
        reveal(stored)
    clean_env.setenv("TONGBAN_PII_KEY", "key-at-start")
    settings_module.load()


def test_tongban_certs_is_read_by_the_settings(clean_env, tmp_path):
    clean_env.setenv("TONGBAN_CERTS", str(tmp_path / "pki"))
    assert Settings().certs_dir == tmp_path / "pki"
    clean_env.delenv("TONGBAN_CERTS")
    assert Settings().certs_dir is None


def test_only_the_settings_module_reads_the_environment():
    """grep: no module of tongban/ or adapters/ but tongban/settings.py reads the process environment (the
    secrets a mapping names go through settings.environment_value too)."""
    offenders = []
    for path in [*(REPO / "tongban").rglob("*.py"), *(REPO / "adapters").rglob("*.py")]:
        if path.name == "settings.py" and path.parent.name == "tongban":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "os.environ" in line or "getenv" in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


# ------------------------------------------------------------------------------------------ scheduled tasks


def test_the_scheduled_ingest_task_honours_the_queue_prefix(sandbox_env, monkeypatch):
    from tongban.bus.local import LocalBus
    from tongban.scheduling.tasks import run_ingest_task
    from tongban.store import open_store

    monkeypatch.setenv("TONGBAN_QUEUE_PREFIX", "district-a")
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    run_ingest_task(str(REPO / "mappings" / "cq-samr-rest.yaml"))
    bus = LocalBus(open_store(settings_module.load().db_url))
    assert bus.depth("district-a.cases.deliver") > 0
    assert bus.depth("tongban.cases.deliver") == 0  # as `tongban ingest` does: nothing on another environment's queue


def test_a_scheduled_task_in_production_without_secrets_fails_for_good(clean_env, tmp_path):
    from tongban.scheduling.common import Permanent
    from tongban.scheduling.tasks import run_ingest_task

    clean_env.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    clean_env.setenv("TONGBAN_ENV", "production")
    with pytest.raises(Permanent, match="TONGBAN_PLATFORM_SECRET"):  # Airflow does not retry it
        run_ingest_task(str(REPO / "mappings" / "cq-samr-rest.yaml"))
