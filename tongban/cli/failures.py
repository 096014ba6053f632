"""Expected failures become one line and a documented exit code, for every command at once.

`GuardedGroup` is the `tongban` command's click group: whatever a command raises is turned by `explain()` into
`error: <what failed> — <what to do>` on stderr and one of the exit codes below. The global `--debug` option (or
TONGBAN_DEBUG=1) prints the traceback as well. Commands raise `CliFailure` for a failure they name themselves.

This seam refuses to know any command: it knows only the kinds of failure (a service that does not answer, a port
that is taken, a file that is missing or unreadable, credentials refused, a configuration that is wrong), and it
never prints a secret (URLs lose their passwords) or personal data (every message is masked).

Exit codes (also in `tongban --help` and the README):
- 0 `EXIT_OK`: the work was done;
- 1 `EXIT_FAILED`: the work failed or left a gap (records quarantined, a run stopped early, nothing to do);
- 2 `EXIT_USAGE`: usage or configuration error (a bad option, a missing or unreadable file, an invalid mapping);
- 3 `EXIT_UNREACHABLE`: a service does not answer or a port is taken (platform, broker, database, legacy system);
- 4 `EXIT_REFUSED`: credentials refused (the platform or a legacy system said 401/403);
- 130: interrupted (Ctrl-C);
- 141: stdout was closed by its reader (`tongban status | head`): nothing more is printed, as for SIGPIPE.
"""
from __future__ import annotations

import errno
import os
import sys
import traceback
import urllib.parse
from dataclasses import dataclass

import click
import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_PIPE_CLOSED = 141

EXIT_CODES_HELP = ("Exit codes: 0 done; 1 the work failed or left a gap (nothing to do counts as a gap); "
                   "2 usage or configuration error (bad option, missing or unreadable file, invalid mapping); "
                   "3 a service does not answer or a port is taken; 4 credentials refused; 130 interrupted; "
                   "141 stdout closed by its reader. "
                   "--debug shows the traceback of a failure.")


class CliFailure(Exception):
    """A failure a command names itself: `raise CliFailure(EXIT_FAILED, "what failed", "what to do")`."""

    def __init__(self, code: int, what: str, todo: str = ""):
        super().__init__(what)
        self.code, self.what, self.todo = code, what, todo


@dataclass
class Failure:
    code: int
    what: str
    todo: str

    def line(self) -> str:
        from tongban.codes import mask_text

        text = " ".join(f"error: {self.what}".split())  # one line, whatever the exception's text held
        return mask_text(f"{text} — {self.todo}" if self.todo else text)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    if parts.password:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return url


def _loaded(module: str, name: str):
    """The class if its module was imported (a failure can only come from a module that ran), else None."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


def _setting(name: str) -> str:
    try:
        from tongban.settings import Settings

        return str(getattr(Settings(), name))
    except Exception:  # the settings themselves may be what is broken
        return "(unknown)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def explain(exc: BaseException) -> Failure:
    """What failed and what to do, for any exception a command let through."""
    if isinstance(exc, CliFailure):
        return Failure(exc.code, exc.what, exc.todo)
    if isinstance(exc, BrokenPipeError):
        return Failure(EXIT_PIPE_CLOSED, "", "")
    if isinstance(exc, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, "interrupted", "nothing half-done is kept; run the command again")
    if _is(exc, "tongban.platform.client", "PlatformTransient"):
        return Failure(EXIT_UNREACHABLE, f"the 渝快办 platform at {safe_url(_setting('platform_url'))} did not answer "
                       f"({_first_line(exc)})", "start it (`tongban sandbox up`) or set TONGBAN_PLATFORM_URL, then run "
                       "the command again")
    if _is(exc, "tongban.platform.client", "PlatformRejected"):
        status = getattr(exc, "status", None)
        if status in (401, 403):
            return Failure(EXIT_REFUSED, f"the 渝快办 platform refused tongban's credentials (HTTP {status}: "
                           f"{getattr(exc, 'reason', exc)})", "check TONGBAN_PLATFORM_ACCESS_KEY and "
                           "TONGBAN_PLATFORM_SECRET")
        return Failure(EXIT_FAILED, f"the 渝快办 platform rejected the request ({_first_line(exc)})",
                       "read the reason; fix the data or the mapping")
    if _is(exc, "tongban.bus.base", "BusError") or _is(exc, "pika.exceptions", "AMQPError"):
        return Failure(EXIT_UNREACHABLE, f"the message bus failed ({_first_line(exc)}; broker "
                       f"{safe_url(_setting('amqp_url'))})", "start RabbitMQ or set TONGBAN_AMQP_URL, or use the "
                       "embedded bus with TONGBAN_BUS=inprocess")
    if _is(exc, "tongban.store.schema", "SchemaNotCurrent"):
        if exc.ahead:
            return Failure(EXIT_USAGE, str(exc), "run the tongban release that upgraded this database (or newer)")
        return Failure(EXIT_USAGE, str(exc), "run `tongban db upgrade` (it migrates the database TONGBAN_DB_URL or "
                       "TONGBAN_HOME names), then the command again")
    if _is(exc, "sqlalchemy.exc", "ArgumentError"):
        return Failure(EXIT_USAGE, f"the database URL is not usable ({_first_line(exc)})", "fix TONGBAN_DB_URL")
    if _is(exc, "sqlalchemy.exc", "OperationalError") or _is(exc, "sqlalchemy.exc", "InterfaceError"):
        original = getattr(exc, "orig", None) or exc
        return Failure(EXIT_UNREACHABLE, f"the database {safe_url(_setting('db_url'))} cannot be used "
                       f"({_first_line(original)})", "start it, or fix TONGBAN_DB_URL / TONGBAN_HOME")
    if _is(exc, "adapters.base", "SourceError"):
        transient = _is(exc, "adapters.base", "TransientSourceError")
        return Failure(EXIT_UNREACHABLE if transient else EXIT_FAILED, f"legacy system {_first_line(exc)}",
                       "check the system's URL and credentials (its mapping file's source: and the environment)")
    if _is(exc, "httpx", "TransportError"):
        request = getattr(exc, "_request", None)
        where = safe_url(str(request.url)) if request is not None else "a service"
        return Failure(EXIT_UNREACHABLE, f"{where} did not answer ({type(exc).__name__}: {_first_line(exc)})",
                       "check that the service runs and its URL is right")
    for module, name in (("tongban.mapping.errors", "MappingFileError"), ("tongban.flowback.config", "FlowbackConfigError"),
                         ("tongban.seal.truststore", "TrustConfigError"), ("yaml", "YAMLError")):
        if _is(exc, module, name):
            return Failure(EXIT_USAGE, _first_line(exc), "fix the file named and run the command again")
    if isinstance(exc, UnicodeDecodeError):
        return Failure(EXIT_USAGE, f"a file is not in the expected encoding ({exc.encoding}: {exc.reason} at byte "
                       f"{exc.start})", "declare its encoding (e.g. tables: {items: {path: …, encoding: gb18030}})")
    if isinstance(exc, OSError):
        return _os_failure(exc)
    return Failure(EXIT_FAILED, f"unexpected {type(exc).__name__}: {_first_line(exc)}",
                   "run again with --debug for the traceback and report it")


def _os_failure(exc: OSError) -> Failure:
    name = exc.filename or ""
    if exc.errno == errno.EADDRINUSE:
        named = exc.strerror if exc.strerror and "in use" in exc.strerror and "port" in exc.strerror else None
        return Failure(EXIT_UNREACHABLE, named or f"a port is already in use ({exc.strerror})",
                       "stop what holds it, or choose other ports (e.g. --port-base)")
    if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT) or \
            isinstance(exc, (ConnectionError, TimeoutError)):
        return Failure(EXIT_UNREACHABLE, f"a service did not answer ({exc.strerror or _first_line(exc)})",
                       "check that it runs and its address is right")
    if isinstance(exc, FileNotFoundError):
        what = f"{name} does not exist" if name else exc.strerror or "a file does not exist"
        return Failure(EXIT_USAGE, what, "check the path (and TONGBAN_HOME, TONGBAN_MAPPINGS)")
    if isinstance(exc, PermissionError):
        return Failure(EXIT_USAGE, f"permission denied on {name or 'a file'}", "check the file's owner and mode")
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return Failure(EXIT_USAGE, f"{name or 'a path'}: {exc.strerror}", "give a file where a file is expected")
    return Failure(EXIT_USAGE, f"{name + ': ' if name else ''}{exc.strerror or _first_line(exc)}",
                   "check the file or device named")


def debug_requested(ctx) -> bool:
    from tongban.settings import debug_requested as debug_in_environment

    if debug_in_environment():
        return True
    while ctx is not None:
        if ctx.params.get("debug"):
            return True
        ctx = ctx.parent
    return False


def report(exc: BaseException, ctx=None) -> int:
    """Print the one line (and the traceback under --debug) to stderr; return the exit code."""
    failure = explain(exc)
    if debug_requested(ctx):
        traceback.print_exception(exc, file=sys.stderr)
    if failure.code == EXIT_PIPE_CLOSED:
        # the reader is gone: point stdout at nothing so that the interpreter's last flush does not fail again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # not a real file (a test runner's buffer)
            pass
        return failure.code
    sys.stdout.flush()
    typer.echo(failure.line(), err=True)
    return failure.code


# Exits and usage errors are the command line's own answers (typer vendors click; plain click's are there too).
_PASS_THROUGH = (typer.Exit, typer.Abort, TyperException, click.exceptions.Exit, click.exceptions.Abort,
                 click.ClickException, SystemExit, GeneratorExit)


class GuardedGroup(TyperGroup):
    """The top-level group: every subcommand runs inside `invoke`, so one try covers them all."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # noqa: BLE001 - the point: nothing reaches the user as a traceback
            raise typer.Exit(report(exc, ctx)) from None
