"""The `tongban` command. Each command group lives in its own module; heavy imports stay inside the
commands so that `tongban --help` starts fast."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="tongban",
    help="tongban — the integration bus between legacy departmental systems and 渝快办.",
    no_args_is_help=True,
    add_completion=False,
)

# (module, group name, help). A module exposes `app` (a Typer group) or `register(app)` (top-level commands).
_GROUPS = [
    ("check", "check", "Validate national codes (证件号码, 统一社会信用代码, 行政区划, 实施编码 …)."),
    ("mapping", "mapping", "Check mapping files against sample records."),
    ("sandbox", "sandbox", "Run the sandbox: mock legacy systems, mock 渝快办, demo."),
    ("seal", "seal", "Sign and verify sealed XML documents (XAdES)."),
    ("certs", "certs", "Sandbox certificate authority and trust store."),
    ("adapter", "adapter", "Inspect source adapters."),
    ("audit", "audit", "Verify the tamper-evident ledger."),
    ("outbox", "outbox", "Messages committed with their ledger events, waiting for the broker: status, relay."),
    ("flowback", "flowback", "National data flowback: ministry batches routed to the districts (数据回流)."),
    ("identity", "identity", "Unified users: legacy identities resolved to platform user ids (统一用户)."),
    ("catalog", "catalog", "The unified item catalogue (统一事项目录): sync, diff, check mappings."),
]
_COMMAND_MODULES = ["run"]  # modules whose register(app) adds top-level commands (ingest, worker, trace …)

for module_name, group, help_text in _GROUPS:
    module = importlib.import_module(f"tongban.cli.{module_name}")
    app.add_typer(module.app, name=group, help=help_text)
for module_name in _COMMAND_MODULES:
    importlib.import_module(f"tongban.cli.{module_name}").register(app)


def main() -> None:
    app()
