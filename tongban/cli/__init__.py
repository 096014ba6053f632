"""The `tongban` command. Each command group lives in its own module; heavy imports stay inside the
commands so that `tongban --help` starts fast. Failures are turned into one line and an exit code in one place
(tongban.cli.failures.GuardedGroup); JSON, tables and progress bars are printed one way (tongban.cli.output)."""
from __future__ import annotations

import importlib
import sys

import typer

from tongban.cli.failures import EXIT_CODES_HELP, GuardedGroup, report

app = typer.Typer(
    name="tongban",
    help="tongban — the integration bus between legacy departmental systems and 渝快办.",
    epilog=EXIT_CODES_HELP,
    cls=GuardedGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# (module, group name, help). A module exposes `app` (a Typer group) or `register(app)` (top-level commands).
_GROUPS = [
    ("check", "check", "Validate national codes (证件号码, 统一社会信用代码, 行政区划, 实施编码 …)."),
    ("mapping", "mapping", "Check mapping files against sample records."),
    ("sandbox", "sandbox", "Run the sandbox: mock legacy systems, mock 渝快办, demo."),
    ("seal", "seal", "Sign and verify sealed XML documents (XAdES)."),
    ("certs", "certs", "Sandbox certificate authority and trust store."),
    ("adapter", "adapter", "Inspect source adapters."),
    ("audit", "audit", "Verify the tamper-evident ledger; signed checkpoints; evidence packages."),
    ("outbox", "outbox", "Messages committed with their ledger events, waiting for the broker: status, relay."),
    ("flowback", "flowback", "National data flowback: ministry batches routed to the districts (数据回流)."),
    ("identity", "identity", "Unified users: legacy identities resolved to platform user ids (统一用户)."),
    ("catalog", "catalog", "The unified item catalogue (统一事项目录): sync, diff, check mappings."),
    ("db", "db", "The database's schema: upgrade it to this tongban's revision, show its revision (Alembic)."),
    ("watermark", "watermark", "Where each system's incremental fetch resumes: show, set, reset (ledger events)."),
    ("bundle", "bundle", "Bundled applications (一件事一次办): check definitions, run the scatter-gather, late members."),
    ("maintenance", "maintenance", "Announced maintenance windows (报备): ingest runs in them are skipped: add, list."),
    ("console", "console", "The auditors' and operators' web console (log-in, timeline, lists, indicators)."),
]
# modules whose register(app) adds top-level commands (ingest, worker, trace, status, quarantine, parked)
_COMMAND_MODULES = ["run", "status", "operators"]


@app.callback()
def _startup(ctx: typer.Context,
             debug: bool = typer.Option(False, "--debug", help="on a failure, print the traceback too "
                                                                "(also TONGBAN_DEBUG=1)")) -> None:
    """tongban — the integration bus between legacy departmental systems and 渝快办.

    Check the settings before any command runs: outside the sandbox a missing secret or a plain-http platform
    URL stops here with one line naming the variable (exit 2), before anything is read or sent."""
    from tongban.settings import SettingsError, startup

    if "--help" in sys.argv[1:] or "--help" in ctx.args:
        return  # help needs no settings
    try:
        startup()
    except SettingsError as exc:
        typer.echo(f"tongban: {exc}", err=True)
        raise typer.Exit(2) from None


for module_name, group, help_text in _GROUPS:
    module = importlib.import_module(f"tongban.cli.{module_name}")
    app.add_typer(module.app, name=group, help=help_text)
for module_name in _COMMAND_MODULES:
    importlib.import_module(f"tongban.cli.{module_name}").register(app)


def main() -> None:
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - a failure outside any command (e.g. while parsing): one line too
        raise SystemExit(report(exc)) from None
