"""`tongban sandbox up|demo`."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from tongban.cli.failures import EXIT_FAILED, CliFailure
from tongban.cli.output import emit_json

app = typer.Typer(no_args_is_help=True)


@app.command()
def demo(polls: int = typer.Option(4, help="ingest rounds; the legacy clocks advance between them"),
         days: int = typer.Option(4, help="legacy days per round"),
         cases: int = typer.Option(1000, help="cases in the mock legacy REST system"),
         mappings: Optional[Path] = typer.Option(None, help="mapping files folder (default: the sandbox's own, "
                                                            "found next to the installed package, from any directory)"),
         as_json: bool = typer.Option(False, "--json", help="print only the summary, as JSON")) -> None:
    """Start the sandbox and run ingest + delivery end to end on the embedded defaults; print a summary.
    Exit 1 when nothing was fetched or anything was delivered twice."""
    from sandbox.demo import run_demo

    result = run_demo(polls=polls, days_per_poll=days, cases=cases, quiet=as_json, mappings_dir=mappings)
    _console_users(err=as_json)
    if as_json:
        emit_json(dataclasses.asdict(result))
    if result.fetched == 0:
        raise CliFailure(EXIT_FAILED, "the demo fetched no records", "check the sandbox's mapping files (--mappings)")
    if result.platform_stats.get("duplicates", 0):
        raise CliFailure(EXIT_FAILED, f"the platform saw {result.platform_stats['duplicates']} duplicate deliveries",
                         "read the trace of a duplicated case (tongban trace) and report it")


@app.command()
def up(cases: int = typer.Option(1000, help="cases in the mock legacy REST system"),
       port_base: Optional[int] = typer.Option(None, "--port-base", min=1, max=65530,
                                               help="put every service on N, N+1, … (platform, legacy REST, legacy "
                                                    "SOAP, ministry, district sinks); default 8700-8702, 8790, 8791"),
       as_json: bool = typer.Option(False, "--json", help="print the services, ports and env.sh as one JSON line")
       ) -> None:
    """Run the mock platform, the mock legacy systems, the mock ministry and the district sinks on 127.0.0.1
    until Ctrl-C; write their URLs to <TONGBAN_HOME>/sandbox/env.sh. A taken port is refused before anything
    starts (exit 3)."""
    import json
    import signal
    import sys
    import threading

    from sandbox.environment import Sandbox
    from tongban.settings import load
    from tongban.store.schema import prepare_sandbox

    prepare_sandbox(load())  # the sandbox's own database: upgraded to head, as `tongban db upgrade` would
    sandbox = Sandbox(load().home, cases=cases, fixed_ports=True, port_base=port_base, flowback=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        urls, ports = sandbox.urls(), sandbox.ports()
        _console_users(err=as_json)
        if as_json:
            services = {name: {"url": urls[name], "port": port} for name, port in ports.items()}
            sys.stdout.write(json.dumps({"services": services, "drop_dir": urls.get("wsjkw-drop"),
                                         "env_file": str(sandbox.env_file)}, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            for name, url in urls.items():
                typer.echo(f"{name:<14} {url}")
            typer.echo(f"sandbox up; Ctrl-C stops it. In another shell, point tongban at it and run the pipeline:\n"
                       f"  source {sandbox.env_file}\n"
                       f"  .venv/bin/tongban ingest && .venv/bin/tongban worker --idle-exit 3 && .venv/bin/tongban status\n"
                       f"  .venv/bin/tongban flowback ingest mappings/flowback/sources/mps-soap.yaml && "
                       f".venv/bin/tongban flowback deliver   # the ministry's waiting batch to the district sinks")
        stop.wait()
    finally:
        sandbox.stop()


def _console_users(err: bool) -> None:
    """The sandbox's console users (public passwords, sandbox only), and how to start the console (on stderr when
    stdout is for JSON)."""
    from tongban.console.users import ensure_sandbox_users
    from tongban.settings import load
    from tongban.store import open_store

    users = ensure_sandbox_users(open_store(load().db_url))
    named = ", ".join(f"{name} / {password} ({role})" for name, (role, password) in users.items())
    typer.echo(f"web console: .venv/bin/tongban console --port 8780, then log in as {named} — sandbox-only "
               f"passwords", err=err)
