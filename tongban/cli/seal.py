"""`tongban seal …`: put an e-seal (XAdES) on an XML document, or check one."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


def default_trust_config() -> Path:
    """$TONGBAN_CERTS/trust.yaml when TONGBAN_CERTS is set, else certs/trust.yaml (which points into certs/sandbox)."""
    certs_dir = os.environ.get("TONGBAN_CERTS")
    return Path(certs_dir) / "trust.yaml" if certs_dir else Path("certs") / "trust.yaml"


def _read_input(path: Path) -> bytes:
    from tongban.seal.xmlsafe import MAX_DOCUMENT_BYTES

    try:
        with path.open("rb") as handle:
            return handle.read(MAX_DOCUMENT_BYTES + 1)  # one byte over lets the verifier report the size rule
    except OSError as exc:
        typer.echo(f"cannot read {path}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None


@app.command()
def sign(
    input_path: Path = typer.Argument(..., metavar="IN", help="The unsigned XML document."),
    cert: Path = typer.Option(..., "--cert", help="Seal certificate (PEM)."),
    key: Path = typer.Option(..., "--key", help="Seal private key (PEM)."),
    output: Path = typer.Option(None, "-o", "--output", help="Where to write the sealed document (default: stdout)."),
) -> None:
    """Seal IN with an enveloped XAdES-BES signature."""
    from tongban.seal.signer import SigningError, XadesSigner
    from tongban.seal.xmlsafe import UnsafeXMLError

    try:
        sealed = XadesSigner(cert, key).sign(_read_input(input_path))
    except (SigningError, UnsafeXMLError) as exc:
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
    input_path: Path = typer.Argument(..., metavar="IN", help="The sealed XML document."),
    trust: list[Path] = typer.Option(None, "--trust", help="Trusted CA certificate (PEM); repeatable. "
                                                            "Default: the trust.yaml configuration."),
    crl: list[Path] = typer.Option(None, "--crl", help="CRL (PEM) to check revocation against; repeatable."),
    party: str = typer.Option("default", "--party", help="Which party's trust store to use from trust.yaml."),
) -> None:
    """Verify the seal on IN. Exit 0 only for a valid seal; otherwise print `invalid seal: <reason>: <message>`
    and exit 1."""
    from tongban.seal.truststore import TrustConfigError, TrustStore
    from tongban.seal.verifier import verify_sealed

    try:
        if trust:
            if not crl:
                typer.echo("warning: no --crl given, revocation is not checked", err=True)
            store = TrustStore.from_files(trust, crl or [])
        else:
            store = TrustStore.load(default_trust_config(), party=party)
    except TrustConfigError as exc:
        typer.echo(f"trust store: {exc}", err=True)
        raise typer.Exit(2) from None
    result = verify_sealed(_read_input(input_path), store)
    if not result.ok:
        typer.echo(f"invalid seal: {result.reason}: {result.message}")
        raise typer.Exit(1)
    signed = result.signing_time.isoformat() if result.signing_time else "unknown time"
    typer.echo(f"valid seal: {result.signer_subject}; signed {signed}; sha256 {result.digest}")
