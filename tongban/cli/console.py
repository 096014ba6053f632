"""`tongban console`: the auditors' and operators' web console, and its users (`tongban console user add`)."""
from __future__ import annotations

import sys

import typer

from tongban.cli.failures import EXIT_USAGE, CliFailure
from tongban.cli.output import JSON_OPTION, emit_json, notice

app = typer.Typer(invoke_without_command=True)
user_app = typer.Typer(no_args_is_help=True)
app.add_typer(user_app, name="user", help="Console users: add (password from a prompt or stdin), list.")


def _settings_and_store():
    from tongban.settings import SettingsError, load
    from tongban.store import open_store

    try:
        settings = load()
        settings.console_session_secret()
    except SettingsError as exc:
        raise CliFailure(EXIT_USAGE, str(exc), "set TONGBAN_CONSOLE_SECRET to a long random value") from None
    return settings, open_store(settings.db_url)


@app.callback()
def console(ctx: typer.Context,
            port: int = typer.Option(8780, "--port", min=0, max=65535, help="port to listen on (0: any free port)"),
            host: str = typer.Option("127.0.0.1", "--host", help="address to listen on")) -> None:
    """Serve the web console (log-in required; roles auditor and operator) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    import socket

    import uvicorn

    from tongban.console.app import create_app

    settings, store = _settings_and_store()
    application = create_app(settings, store)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        raise CliFailure(3, f"cannot listen on {host}:{port} ({exc.strerror})", "choose another --port") from None
    bound = listener.getsockname()[1]
    typer.echo(f"tongban console on http://{host}:{bound}/ (Ctrl-C stops it); users: tongban console user add NAME "
               f"--role auditor|operator", err=True)
    sys.stderr.flush()
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", access_log=False))
    server.run(sockets=[listener])


def _password(name: str) -> str:
    """From a prompt on a terminal (asked twice), else the first line of stdin: never a flag, never echoed."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise CliFailure(EXIT_USAGE, "the two passwords differ", "run the command again")
        return first
    return sys.stdin.readline().rstrip("\r\n")


@user_app.command("add")
def user_add(name: str = typer.Argument(..., help="the user's log-in name"),
             role: str = typer.Option(..., "--role", help="auditor (read-only) or operator (may replay)"),
             replace: bool = typer.Option(False, "--replace", help="set a new role and password for an existing user"),
             as_json: bool = JSON_OPTION) -> None:
    """Add a console user; the password is read from a prompt (or the first line of stdin), hashed with scrypt."""
    from tongban.console.users import UserError, add_user

    _, store = _settings_and_store()
    try:
        user = add_user(store, name, role, _password(name), replace=replace)
    except UserError as exc:
        raise CliFailure(EXIT_USAGE, str(exc), "see tongban console user add --help") from None
    if as_json:
        emit_json({"name": user.name, "role": user.role, "replaced": replace})
    else:
        typer.echo(f"console user {user.name} ({user.role}) {'updated' if replace else 'added'}")


@user_app.command("list")
def user_list(as_json: bool = JSON_OPTION) -> None:
    """The console's users and their roles (never their password hashes)."""
    from tongban.console.users import list_users

    _, store = _settings_and_store()
    users = list_users(store)
    if as_json:
        emit_json(users)
        return
    if not users:
        notice("no console users yet: tongban console user add NAME --role auditor|operator")
    for row in users:
        typer.echo(f"{row['name']:<20} {row['role']:<9} added {row['created_at'][:19]}")
