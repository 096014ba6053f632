"""`tongban sandbox up|demo`."""
from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def demo(polls: int = typer.Option(4, help="ingest rounds; the legacy clocks advance between them"),
         days: int = typer.Option(4, help="legacy days per round"),
         cases: int = typer.Option(1000, help="cases in the mock legacy REST system")) -> None:
    """Start the sandbox and run ingest + delivery end to end on the embedded defaults; print a summary."""
    from sandbox.demo import run_demo

    result = run_demo(polls=polls, days_per_poll=days, cases=cases)
    if result.platform_stats.get("duplicates", 0):
        raise typer.Exit(1)


@app.command()
def up(cases: int = typer.Option(1000, help="cases in the mock legacy REST system")) -> None:
    """Run the mock platform and legacy systems on their default ports until Ctrl-C."""
    import signal
    import threading

    from sandbox.environment import Sandbox
    from tongban.settings import load

    sandbox = Sandbox(load().home, cases=cases, fixed_ports=True).start()
    for name, url in sandbox.urls().items():
        typer.echo(f"{name:<14} {url}")
    typer.echo(f"sandbox up; Ctrl-C stops it. In another shell, point tongban at it and run the pipeline:\n"
               f"  source {sandbox.env_file}\n"
               f"  .venv/bin/tongban ingest && .venv/bin/tongban worker --idle-exit 3 && .venv/bin/tongban status")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    sandbox.stop()
