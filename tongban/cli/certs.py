"""`tongban certs …`: the sandbox certificate authority (SANDBOX ONLY keys, never for production)."""
from __future__ import annotations

from pathlib import Path

import typer

from tongban.cli.failures import EXIT_FAILED, EXIT_USAGE, CliFailure
from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)


def default_certs_dir() -> Path:
    """TONGBAN_CERTS when set, else certs/sandbox (git-ignored)."""
    from tongban.settings import current

    return current().certs_dir or Path("certs/sandbox")


@app.command()
def init(
    directory: Path = typer.Option(None, "--dir", help="Where to write the sandbox CA (default: $TONGBAN_CERTS "
                                                       "or certs/sandbox)."),
    key_type: str = typer.Option("ec", "--key-type", help="ec (ECDSA P-256) or rsa (RSA-2048)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing sandbox CA in that folder."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a sandbox root CA, one seal certificate per department, the mock platform's receipt certificate,
    an empty CRL and a trust.yaml."""
    from tongban.seal.ca import KEY_TYPES, init_sandbox_ca

    if key_type not in KEY_TYPES:
        raise CliFailure(EXIT_USAGE, f"--key-type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}",
                         "choose ec or rsa")
    directory = directory or default_certs_dir()
    if (directory / "root-ca.pem").exists() and not force:
        raise CliFailure(EXIT_FAILED, f"{directory} already holds a sandbox CA", "pass --force to replace it")
    info = init_sandbox_ca(directory, key_type=key_type)
    if as_json:
        emit_json({"directory": str(directory), "sandbox_only": True, "ca_cert": str(info["ca_cert"]),
                   "crl": str(info["crl"]), "trust_config": str(info["trust_config"]),
                   "departments": {slug: {"cert": str(i.cert_path), "key": str(i.key_path)}
                                   for slug, i in info["departments"].items()},
                   "platform": {"cert": str(info["platform"].cert_path), "key": str(info["platform"].key_path)},
                   "untrusted_signer": {"cert": str(info["untrusted_signer"].cert_path)}})
        return
    typer.echo(f"sandbox CA (SANDBOX ONLY, never use in production) written to {directory}")
    typer.echo(f"  root CA       {info['ca_cert']}")
    typer.echo(f"  CRL           {info['crl']}")
    typer.echo(f"  trust config  {info['trust_config']}")
    for slug, issued in info["departments"].items():
        typer.echo(f"  seal {slug:<8} {issued.cert_path}  key {issued.key_path}")
    typer.echo(f"  platform      {info['platform'].cert_path}  key {info['platform'].key_path}")
    typer.echo(f"  untrusted     {info['untrusted_signer'].cert_path} (issued by a CA nobody trusts; for tests)")
