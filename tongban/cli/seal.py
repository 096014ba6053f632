"""`tongban seal …`: put an e-seal (XAdES, or 国密 SM2 per GB/T 38540) on an XML document, check one, or send
sealed documents to 渝快办."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from tongban.cli.failures import EXIT_USAGE, CliFailure
from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)
TRUST_TODO = "create the sandbox CA with `tongban certs init`, or name the trust store (--trust / --trust-config)"


def default_trust_config() -> Path:
    """$TONGBAN_CERTS/trust.yaml when TONGBAN_CERTS is set, else certs/trust.yaml (which points into certs/sandbox)."""
    from tongban.settings import current

    certs_dir = current().certs_dir
    return certs_dir / "trust.yaml" if certs_dir else Path("certs") / "trust.yaml"


def _read_input(path: Path) -> bytes:
    from adapters.safexml import MAX_SEALED_BYTES

    try:
        with path.open("rb") as handle:
            return handle.read(MAX_SEALED_BYTES + 1)  # one byte over lets the verifier report the size rule
    except OSError as exc:
        raise CliFailure(EXIT_USAGE, f"cannot read {path}: {exc.strerror}", "check the path") from None


@app.command()
def sign(
    input_path: Path = typer.Argument(..., metavar="IN", help="The unsigned XML document."),
    cert: Path = typer.Option(..., "--cert", help="Seal certificate (PEM)."),
    key: Path = typer.Option(..., "--key", help="Seal private key (PEM)."),
    output: Path = typer.Option(None, "-o", "--output", help="Where to write the sealed document (default: stdout)."),
    alg: str = typer.Option("xades", "--alg", help="xades (enveloped XAdES-BES, RSA/ECDSA) or sm2 (GB/T 38540 "
                                                   "SES_Signature, SM2/SM3; OUT is one DER file holding IN and "
                                                   "its signature)."),
    seal_file: Path = typer.Option(None, "--seal", help="SM2 only: an SES_Seal (DER) issued by a seal maker; "
                                                        "default: the signer makes its own seal."),
) -> None:
    """Seal IN with an enveloped XAdES-BES signature, or (--alg sm2) with a GB/T 38540 SM2 seal."""
    from tongban.seal.signer import SigningError, XadesSigner
    from adapters.safexml import XMLRejected, parse_untrusted

    if alg not in ("xades", "sm2"):
        raise CliFailure(EXIT_USAGE, f"--alg must be xades or sm2, not {alg!r}", "choose xades or sm2")
    if seal_file is not None and alg != "sm2":
        raise CliFailure(EXIT_USAGE, "--seal is for --alg sm2 only", "drop --seal or add --alg sm2")
    try:
        if alg == "sm2":
            from tongban.seal.sm2.signer import SM2Signer

            document = _read_input(input_path)
            parse_untrusted(document)  # the same input rule as XAdES: safe, well-formed XML
            seal = _read_input(seal_file) if seal_file is not None else None
            sealed = SM2Signer(cert, key, seal=seal).sign(document)
        else:
            sealed = XadesSigner(cert, key).sign(_read_input(input_path))
    except (SigningError, XMLRejected, ValueError) as exc:
        typer.echo(f"cannot seal {input_path}: {exc}", err=True)
        raise typer.Exit(1) from None
    if output is None:
        sys.stdout.buffer.write(sealed)
        sys.stdout.flush()
    else:
        output.write_bytes(sealed)
        typer.echo(f"sealed {input_path} -> {output}", err=True)


@app.command()
def verify(
    input_path: Path = typer.Argument(..., metavar="IN", help="The sealed document: XML with an XAdES seal, or an "
                                                              "SM2-sealed file from `seal sign --alg sm2`."),
    trust: list[Path] = typer.Option(None, "--trust", help="Trusted CA certificate (PEM); repeatable. "
                                                            "Default: the trust.yaml configuration."),
    crl: list[Path] = typer.Option(None, "--crl", help="CRL (PEM) to check revocation against; repeatable."),
    party: str = typer.Option("default", "--party", help="Which party's trust store to use from trust.yaml."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Verify the seal on IN (XAdES or SM2, recognised by content). Exit 0 only for a valid seal; otherwise print
    `invalid seal: <reason>: <message>` and exit 1."""
    from tongban.seal.truststore import TrustConfigError, TrustStore
    from tongban.seal.verifier import verify_sealed

    try:
        if trust:
            if not crl:
                typer.echo("warning: no --crl given, revocation is not checked", err=True)
            store = _trust_from_files(trust, crl or [])
        else:
            store = TrustStore.load(default_trust_config(), party=party)
    except TrustConfigError as exc:
        raise CliFailure(EXIT_USAGE, f"trust store: {exc}", TRUST_TODO) from None
    result = verify_sealed(_read_input(input_path), store)
    if as_json:
        emit_json({"file": str(input_path), "ok": result.ok, "reason": result.reason, "message": result.message,
                   "kind": _kind(input_path), "signer": result.signer_subject, "signed_at": result.signing_time, "sha256": result.digest})
        raise typer.Exit(0 if result.ok else 1)
    if not result.ok:
        typer.echo(f"invalid seal: {result.reason}: {result.message}")
        raise typer.Exit(1)
    signed = result.signing_time.isoformat() if result.signing_time else "unknown time"
    typer.echo(f"valid seal: {result.signer_subject}; signed {signed}; sha256 {result.digest}")


def _kind(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return "sm2" if handle.read(1) == b"\x30" else "xades"
    except OSError:
        return "unknown"


def _trust_from_files(trust: list[Path], crl: list[Path]):
    """--trust / --crl files: SM2 ones (certificates with SM2 keys, SM2-signed CRLs) go to the SM2 trust store."""
    import dataclasses

    from tongban.seal.sm2.trust import SM2TrustStore, is_sm2_file
    from tongban.seal.truststore import TrustConfigError, TrustStore

    for path in [*trust, *crl]:
        if not path.is_file():
            raise TrustConfigError(f"trust store file {path} does not exist")
    sm2_ca, sm2_crl = [p for p in trust if is_sm2_file(p)], [p for p in crl if is_sm2_file(p)]
    other_ca, other_crl = [p for p in trust if p not in sm2_ca], [p for p in crl if p not in sm2_crl]
    if sm2_crl and not sm2_ca:
        raise TrustConfigError(f"SM2 CRL {sm2_crl[0]} has no --trust SM2 CA that issued it")
    sm2 = SM2TrustStore.from_files(sm2_ca, sm2_crl) if sm2_ca else None
    if not other_ca:
        if other_crl:
            raise TrustConfigError(f"CRL {other_crl[0]} has no --trust CA that issued it")
        return SM2TrustStore((), {}) if sm2 is None else sm2
    return dataclasses.replace(TrustStore.from_files(other_ca, other_crl), sm2=sm2)


def _trust_store(trust_config: Path | None, party: str = "default"):
    from tongban.seal.truststore import TrustConfigError, TrustStore

    try:
        return TrustStore.load(trust_config or default_trust_config(), party=party)
    except TrustConfigError as exc:
        raise CliFailure(EXIT_USAGE, f"trust store: {exc}", TRUST_TODO) from None


@app.command()
def send(
    files: list[Path] = typer.Argument(..., metavar="FILE...", help="Sealed documents (XAdES XML or SM2 files) to "
                                                                  "send to 渝快办."),
    system: str = typer.Option("sealed-documents", "--system", help="The sending system's name (ledger, quarantine)."),
    trust_config: Path = typer.Option(None, "--trust-config", help="trust.yaml (default: $TONGBAN_CERTS/trust.yaml "
                                                                   "or certs/trust.yaml)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Verify each document's seal and queue it for delivery; a bad seal is quarantined with its reason.
    Exit 1 when any document was quarantined. `tongban seal deliver` (or the sandbox demo) delivers them."""
    from tongban.bus import open_bus
    from tongban.seal.exchange import submit_sealed
    from tongban.settings import load
    from tongban.store import open_store

    trust = _trust_store(trust_config)
    settings = load()
    store = open_store(settings.db_url)
    bus = open_bus(settings, announce=lambda text: typer.echo(text, err=True))
    refused = 0
    outcomes = []
    say = (lambda text: None) if as_json else typer.echo
    try:
        for path in files:
            try:
                result = submit_sealed(path, system=system, store=store, bus=bus, trust=trust)
            except OSError as exc:
                typer.echo(f"cannot read {path}: {exc.strerror}", err=True)
                outcomes.append({"file": str(path), "queued": False, "reason": "unreadable", "message": exc.strerror})
                refused += 1
                continue
            outcomes.append({"file": str(path), "queued": result.ok, "document_id": result.document_id,
                             "reason": result.reason, "message": result.message})
            if result.ok:
                say(f"queued {path}: {result.document_id} ({result.message})")
            else:
                refused += 1
                say(f"quarantined {path}: {result.reason}: {result.message}")
    finally:
        bus.close()
    if as_json:
        emit_json(outcomes)
    if refused:
        raise typer.Exit(1)


@app.command()
def deliver(
    trust_config: Path = typer.Option(None, "--trust-config", help="trust.yaml used to verify the platform's "
                                                                   "receipts (default as for `send`)."),
    idle_exit: float = typer.Option(None, "--idle-exit", help="Stop after the queue was empty this many seconds "
                                                              "(default: run until interrupted)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the sealed-document worker: push queued documents to 渝快办 and verify each signed receipt."""
    import threading

    from tongban.bus import open_bus
    from tongban.seal.exchange import SealedDeliveryWorker
    from tongban.platform import PlatformClient
    from tongban.settings import load
    from tongban.store import open_store

    trust = _trust_store(trust_config)
    settings = load()
    store = open_store(settings.db_url)
    bus = open_bus(settings, announce=lambda text: typer.echo(text, err=True))
    client = PlatformClient(settings)
    stop = threading.Event()
    try:
        stats = SealedDeliveryWorker(store=store, bus=bus, platform=client, trust=trust).run(
            stop=stop, idle_exit=idle_exit)
    except KeyboardInterrupt:
        stop.set()
        raise typer.Exit(130) from None
    finally:
        client.close()
        bus.close()
    if as_json:
        emit_json({name: getattr(stats, name) for name in ("delivered", "duplicates", "rejected", "retried", "parked")})
        return
    typer.echo(f"delivered {stats.delivered} (receipts verified), duplicates {stats.duplicates}, "
               f"rejected by the platform {stats.rejected}, retried {stats.retried}, parked {stats.parked}")
