"""`tongban audit`: verify the ledger (hash chain, deliveries, signed checkpoints), take checkpoints, export and
verify evidence packages (docs/audit.md)."""
from __future__ import annotations

from pathlib import Path

import typer

from tongban.cli.failures import EXIT_FAILED, EXIT_USAGE, CliFailure
from tongban.cli.context import operator_name
from tongban.cli.output import JSON_OPTION, emit_json, interactive, progress

app = typer.Typer(no_args_is_help=True)

KEY_TODO = "set TONGBAN_AUDIT_KEY and TONGBAN_AUDIT_CERT (docs/audit.md)"


def _open():
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    return settings, open_store(settings.db_url)


def _trust(settings):
    from tongban.audit.keys import trust_config
    from tongban.seal.truststore import TrustConfigError, TrustStore

    try:
        return TrustStore.load(trust_config(settings))
    except TrustConfigError as exc:
        raise CliFailure(EXIT_USAGE, f"trust store: {exc}", "create the sandbox CA with `tongban certs init`, "
                                                            "or set TONGBAN_CERTS") from None


def _signer(settings):
    from tongban.audit.keys import AuditKeyMissing, audit_signer

    try:
        return audit_signer(settings)
    except AuditKeyMissing as exc:
        raise CliFailure(EXIT_USAGE, f"audit key: {exc}", KEY_TODO) from None


@app.command()
def verify(as_json: bool = JSON_OPTION) -> None:
    """Recompute the hash chain, check every delivery has a publication, and check every signed checkpoint
    (signature, link, and that the ledger still holds and matches what it covered); exit 1 naming the first
    problem (a progress bar on a terminal)."""
    from dataclasses import asdict

    from sqlalchemy import func, select

    from tongban.audit import ledger
    from tongban.audit.checkpoints import list_checkpoints, verify_checkpoints
    from tongban.store.tables import ledger as ledger_table

    settings, store = _open()
    show_bar = interactive(as_json)
    total = None
    if show_bar:
        with store.read() as conn:
            total = conn.execute(select(func.count()).select_from(ledger_table)).scalar()
    with progress("verifying the ledger", total, enabled=show_bar) as bar:
        chain = ledger.verify(store, progress=bar.advance)
    deliveries = ledger.unpublished_deliveries(store)
    checkpoints = verify_checkpoints(store, _trust(settings)) if list_checkpoints(store) else None
    ok = chain.ok and deliveries.ok and (checkpoints is None or checkpoints.ok)
    if as_json:
        emit_json({**asdict(chain), "ok": ok, "chain_ok": chain.ok, "deliveries": deliveries.deliveries,
                   "unpublished_deliveries": deliveries.unpublished_count, "unpublished": deliveries.unpublished,
                   "checkpoints": asdict(checkpoints) if checkpoints else {"ok": True, "checkpoints": 0}})
        if not ok:
            raise typer.Exit(EXIT_FAILED)
        return
    if not chain.ok:
        typer.echo(f"ledger BROKEN at event #{chain.broken_seq} (id {chain.broken_event_id}): {chain.reason}", err=True)
    if not deliveries.ok:
        first = deliveries.unpublished[0]
        typer.echo(f"ledger INCOMPLETE: {deliveries.unpublished_count} delivery events name a message with no "
                   f"\"published\" event (no provenance); first: event #{first['seq']} ({first['hop']}) of message "
                   f"{first['message_id']} from {first['system'] or '-'}", err=True)
    if checkpoints is not None and not checkpoints.ok:
        typer.echo(f"ledger does not match its signed checkpoints: {checkpoints.reason}", err=True)
    if not ok:
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"ledger intact: {chain.events} events, hash chain verified; "
               f"{deliveries.deliveries} delivery events, each with its publication")
    if checkpoints is not None:
        typer.echo(f"{checkpoints.checkpoints} signed checkpoints verified, the latest covering "
                   f"{checkpoints.latest_size} events; the ledger is consistent with every one")


@app.command()
def checkpoint(as_json: bool = JSON_OPTION) -> None:
    """Sign the ledger's current tree head (RFC 6962: size, root, time) with tongban's audit key and store it."""
    from tongban.audit.checkpoints import take_checkpoint

    settings, store = _open()
    taken = take_checkpoint(store, _signer(settings))
    if as_json:
        emit_json({k: v for k, v in taken.items()})
        return
    typer.echo(f"checkpoint #{taken['id']}: {taken['size']} events, root {taken['root']}, at {taken['time']}, "
               f"signed by {taken['signer']}")


@app.command()
def export(identifier: str = typer.Argument(..., help="a 办件编号, message id, idempotency key or legacy case key "
                                                      "(anything `tongban trace` accepts)"),
           out: Path = typer.Option(..., "-o", "--output", help="the evidence package to write (a .zip)"),
           unmasked: bool = typer.Option(False, "--unmasked", help="include personal data and the sealed documents "
                                                                   "(recorded in the ledger with the actor)"),
           actor: str = typer.Option(None, "--actor", help="who exports (default: the login name)"),
           as_json: bool = JSON_OPTION) -> None:
    """Export one case's evidence package: ledger events, signed receipts, sealed documents, inclusion proofs
    into a signed checkpoint, certificates — an ASiC-E container signed with the audit key."""
    from tongban.audit.evidence import EvidenceError, export_package, verify_package
    from tongban.audit.keys import AuditKeyMissing

    _, store = _open()
    try:
        path = export_package(store, identifier, out, unmasked=unmasked, actor=operator_name(actor) if unmasked else actor)
    except EvidenceError as exc:
        raise CliFailure(EXIT_FAILED, str(exc), "check the identifier with `tongban trace`") from None
    except AuditKeyMissing as exc:
        raise CliFailure(EXIT_USAGE, f"audit key: {exc}", KEY_TODO) from None
    summary = verify_package(path).summary
    if as_json:
        emit_json({"path": str(path), **summary})
        return
    typer.echo(f"evidence package {path}: {summary.get('events')} events, {summary.get('receipts_verified')} signed "
               f"receipts, {summary.get('sealed_members')} sealed members, proofs into a checkpoint of "
               f"{summary.get('checkpoint_size')} events; {'masked' if summary.get('masked') else 'UNMASKED'}")


@app.command("verify-package")
def verify_package_command(
        package: Path = typer.Argument(..., help="the evidence package (.zip)", exists=True, dir_okay=False),
        trust: Path = typer.Option(None, "--trust", help="the CA certificate (PEM) to anchor the check in; default: "
                                                         "the CA certificates the package carries",
                                   exists=True, dir_okay=False),
        as_json: bool = JSON_OPTION) -> None:
    """Check an evidence package offline (no store, no environment): exit 0 with a summary, or 1 naming the
    member and the check that failed."""
    from tongban.audit.package_verify import verify_package

    result = verify_package(package, trust_pem=trust.read_bytes() if trust else None)
    if as_json:
        emit_json({"ok": result.ok, "summary": result.summary,
                   "failures": [{"member": m, "check": c, "detail": d} for m, c, d in result.failures]})
    elif result.ok:
        s = result.summary
        typer.echo(f"package verified: {s['events']} ledger events of {s['identifier']}, each included in the "
                   f"checkpoint of {s['checkpoint_size']} events ({s['checkpoint_time']}); {s['receipts_verified']} "
                   f"platform-signed receipts; {s['sealed_members']} sealed members; signed by {s['signed_by']}; "
                   f"trust: {s['trust']}")
    else:
        for member, check, detail in result.failures:
            typer.echo(f"package INVALID: member {member}: check {check}: {detail}", err=True)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
