"""No traceback for an expected failure: every command group run against a stopped platform (an unused port), a
stopped broker and database, a taken port, missing files and refused credentials answers with one line naming what
failed and what to do, and a documented exit code (1 work failed, 2 usage/config, 3 unreachable, 4 refused);
`--debug` shows the traceback. Nothing to do is not success."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.cli import app
from tongban.cli.failures import EXIT_FAILED, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
TONGBAN = str(Path(sys.executable).with_name("tongban"))
DOCUMENTED = {0, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


@pytest.fixture
def platform_down(tmp_path, monkeypatch, samr_mappings):
    """The environment of an operator whose platform is down; the legacy REST system answers, so ingest gets as
    far as asking the platform for case numbers."""
    from sandbox.legacy_rest import create_app
    from sandbox.legacy_world import LegacyWorld
    from sandbox.runner import Server

    legacy = Server(create_app(LegacyWorld(seed=3, cases=30), token="t"), name="legacy").start()
    folder = samr_mappings
    from tests.schema_at_head import home_at_head

    for name, value in {"TONGBAN_HOME": str(home_at_head(tmp_path / "home")),
                        "TONGBAN_PLATFORM_URL": f"http://127.0.0.1:{unused_port()}",
                        "CQ_SAMR_URL": legacy.url, "CQ_SAMR_TOKEN": "t", "TONGBAN_CERTS": str(tmp_path / "certs")}.items():
        monkeypatch.setenv(name, value)
    yield folder
    legacy.stop()


def _one_line_answer(result) -> str:
    """Assert the answer of a command: no traceback, no escaped exception, a documented code, and on a failure
    exactly one line (besides notices and warnings) on stderr. Returns that line."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "File \"" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in DOCUMENTED, (result.exit_code, text)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("notice:", "warning:"))]
    if result.exit_code:
        assert len(lines) == 1, result.stderr
        return lines[0]
    return ""


# One or more commands of every group, as an operator would type them while the platform is down.
EVERY_GROUP = [
    (["catalog", "sync"], EXIT_UNREACHABLE),
    (["ingest"], EXIT_UNREACHABLE),
    (["ingest", "--json"], EXIT_UNREACHABLE),
    (["worker", "--idle-exit", "0.3"], 0),
    (["status"], 0),
    (["trace", "no-such-case"], EXIT_FAILED),
    (["quarantine", "list"], 0),
    (["quarantine", "show", "999"], EXIT_FAILED),
    (["parked", "show", "999"], EXIT_FAILED),
    (["audit", "verify"], 0),
    (["watermark", "set", "no-such-system", "x"], EXIT_USAGE),
    (["identity", "retry"], None),
    (["identity", "conflicts"], 0),
    (["catalog", "check"], EXIT_FAILED),
    (["catalog", "diff"], EXIT_FAILED),
    (["check", "region", "99"], EXIT_FAILED),
    (["mapping", "check", "no-such-file.yaml"], None),
    (["adapter", "describe", "no-such-file.yaml"], None),
    (["seal", "verify", "no-such-file.xml", "--trust", "no-such-ca.pem"], EXIT_USAGE),
    (["seal", "deliver", "--idle-exit", "0.3", "--trust-config", "no-such-trust.yaml"], EXIT_USAGE),
    (["certs", "init", "--key-type", "dsa"], EXIT_USAGE),
    (["flowback", "report", "NO-SUCH-BATCH"], EXIT_FAILED),
    (["flowback", "ingest", "no-such-source.yaml"], None),
    (["sandbox", "demo", "--mappings", "no-such-dir"], EXIT_USAGE),
    (["console", "user", "list"], 0),
    (["console", "user", "add", "someone", "--role", "admin"], EXIT_USAGE),
]


@pytest.mark.parametrize("args,expected", EVERY_GROUP, ids=[" ".join(a) for a, _ in EVERY_GROUP])
def test_every_group_against_a_stopped_platform(platform_down, args, expected):
    result = CliRunner().invoke(app, args)
    line = _one_line_answer(result)
    if expected is not None:
        assert result.exit_code == expected, (result.stdout, result.stderr)
    if expected == EXIT_UNREACHABLE:
        assert "platform" in line and "TONGBAN_PLATFORM_URL" in line


def test_the_real_command_prints_one_line_and_debug_shows_the_traceback(platform_down):
    import os

    quiet = subprocess.run([TONGBAN, "catalog", "sync"], capture_output=True, text=True, env=os.environ, timeout=60)
    assert quiet.returncode == EXIT_UNREACHABLE and quiet.stdout == ""
    # The sandbox's once-per-process warning about public default secrets is a line of its own, not the error's.
    quiet.stderr = "".join(line for line in quiet.stderr.splitlines(keepends=True)
                           if not line.startswith("tongban: sandbox mode:"))
    assert quiet.stderr.count("\n") == 1 and quiet.stderr.startswith("error: the 渝快办 platform at http://127.0.0.1:")
    assert "did not answer" in quiet.stderr and "Traceback" not in quiet.stderr
    loud = subprocess.run([TONGBAN, "--debug", "catalog", "sync"], capture_output=True, text=True, env=os.environ,
                          timeout=60)
    assert loud.returncode == EXIT_UNREACHABLE
    assert "Traceback" in loud.stderr and "PlatformTransient" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()  # the same one line, last


def test_a_stopped_broker_and_a_stopped_database(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "rabbitmq")
    monkeypatch.setenv("TONGBAN_AMQP_URL", f"amqp://guest:secret-pw@127.0.0.1:{unused_port()}/")
    result = CliRunner().invoke(app, ["status"])
    line = _one_line_answer(result)
    assert result.exit_code == EXIT_UNREACHABLE and "message bus" in line and "TONGBAN_BUS=inprocess" in line
    assert "secret-pw" not in line  # the broker's password is never printed

    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    monkeypatch.setenv("TONGBAN_DB_URL", f"postgresql+psycopg://root:db-pw@127.0.0.1:{unused_port()}/test")
    result = CliRunner().invoke(app, ["audit", "verify"])
    line = _one_line_answer(result)
    assert result.exit_code == EXIT_UNREACHABLE and "database" in line and "TONGBAN_DB_URL" in line
    assert "db-pw" not in line


def test_refused_platform_credentials(tmp_path, monkeypatch):
    from sandbox.platform import create_app
    from sandbox.runner import Server

    platform = Server(create_app(None, secret="the-platform-knows-another-secret"), name="platform").start()
    try:
        monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("TONGBAN_PLATFORM_URL", platform.url)
        result = CliRunner().invoke(app, ["catalog", "sync"])
    finally:
        platform.stop()
    line = _one_line_answer(result)
    assert result.exit_code == EXIT_REFUSED and "refused tongban's credentials" in line
    assert "TONGBAN_PLATFORM_SECRET" in line


def test_a_taken_port(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = CliRunner().invoke(app, ["sandbox", "up", "--port-base", str(taken)])
    line = _one_line_answer(result)
    assert result.exit_code == EXIT_UNREACHABLE
    assert f"{taken} (platform)" in line and "--port-base" in line


def test_unreadable_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    missing = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.yaml")])
    line = _one_line_answer(missing)
    assert missing.exit_code == EXIT_USAGE and "nope.yaml" in line
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "root-ca.pem").write_text("x", encoding="utf-8")
    refused = CliRunner().invoke(app, ["certs", "init", "--dir", str(folder)])
    assert "already holds a sandbox CA" in _one_line_answer(refused) and refused.exit_code == EXIT_FAILED


def test_nothing_to_do_is_not_success(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_MAPPINGS", str(empty))
    result = CliRunner().invoke(app, ["ingest"])
    line = _one_line_answer(result)
    assert result.exit_code == EXIT_FAILED and str(empty) in line and "TONGBAN_MAPPINGS" in line


def test_an_unexpected_error_is_one_line_too(tmp_path, monkeypatch):
    import tongban.cli.status as status

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    monkeypatch.setattr(status, "status_data", broken)
    result = CliRunner().invoke(app, ["status", "--json"])
    line = _one_line_answer(result)
    assert result.exit_code == EXIT_FAILED and "unexpected ZeroDivisionError: a bug" in line and "--debug" in line
    assert result.stdout == ""


def test_usage_errors_exit_2_without_a_traceback():
    for args in (["sandbox", "up", "--port-base", "65535"], ["ingest", "--no-such-option"], ["watermark", "set"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == EXIT_USAGE and "Traceback" not in result.stderr and "Usage:" in result.stderr


def test_help_documents_the_exit_codes():
    result = CliRunner().invoke(app, ["--help"])
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "Exit codes: 0 done; 1 the work failed" in text and "3 a service does not answer" in text
    assert "--debug" in text


def _cases():
    import errno

    import httpx
    import sqlalchemy.exc

    from adapters.base import SourceError, TransientSourceError
    from tongban.bus.base import BusError
    from tongban.mapping.errors import MappingFileError
    from tongban.platform.client import PlatformRejected, PlatformTransient

    return [
        (PlatformTransient("ConnectError calling /api/v1/numbering"), EXIT_UNREACHABLE, "platform"),
        (PlatformRejected(401, "bad signature"), EXIT_REFUSED, "refused tongban's credentials"),
        (PlatformRejected(422, "schema"), EXIT_FAILED, "rejected the request"),
        (BusError("nacked"), EXIT_UNREACHABLE, "message bus"),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")), EXIT_UNREACHABLE, "database"),
        (TransientSourceError("cq-x", "timeout"), EXIT_UNREACHABLE, "legacy system cq-x"),
        (SourceError("cq-x", "SOAP fault"), EXIT_FAILED, "legacy system cq-x"),
        (httpx.ConnectError("refused"), EXIT_UNREACHABLE, "did not answer"),
        (OSError(errno.EADDRINUSE, "port 8700 on 127.0.0.1 (mock-platform) is already in use"), EXIT_UNREACHABLE,
         "port 8700"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), EXIT_UNREACHABLE, "did not answer"),
        (FileNotFoundError(errno.ENOENT, "No such file", "x.yaml"), EXIT_USAGE, "x.yaml does not exist"),
        (PermissionError(errno.EACCES, "Permission denied", "x.csv"), EXIT_USAGE, "permission denied on x.csv"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
         EXIT_USAGE, "encoding"),
        (MappingFileError("m.yaml", 3, "unknown key 'sourse'"), EXIT_USAGE, "m.yaml"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (ZeroDivisionError("bug"), EXIT_FAILED, "unexpected ZeroDivisionError"),
    ]


def test_each_kind_of_failure_has_its_code_and_line():
    from tongban.cli.failures import explain

    for exc, code, words in _cases():
        failure = explain(exc)
        assert failure.code == code, (exc, failure)
        line = failure.line()
        assert words in line and line.startswith("error: ") and " — " in line and "\n" not in line, line


def test_a_closed_pipe_ends_quietly(capsys):
    from tongban.cli.failures import EXIT_PIPE_CLOSED, report

    assert report(BrokenPipeError()) == EXIT_PIPE_CLOSED
    assert capsys.readouterr().err == ""
