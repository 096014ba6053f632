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
    sm2: bool = typer.Option(False, "--sm2", help="Also make the 国密 SM2 sandbox CA, SM2 seal certificates and "
                                                  "CRL (GB/T 38540 seals); added beside an existing RSA/ECDSA CA."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a sandbox root CA, one seal certificate per department, the mock platform's receipt certificate,
    an empty CRL and a trust.yaml (with --sm2, the SM2 ones beside them)."""
    from tongban.seal.ca import KEY_TYPES, add_sm2_sandbox_ca, init_sandbox_ca

    if key_type not in KEY_TYPES:
        raise CliFailure(EXIT_USAGE, f"--key-type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}",
                         "choose ec or rsa")
    directory = directory or default_certs_dir()
    have_ca = (directory / "root-ca.pem").exists()
    if have_ca and not force and (not sm2 or (directory / "sm2-root-ca.pem").exists()):
        raise CliFailure(EXIT_FAILED, f"{directory} already holds a sandbox CA{' (with SM2)' if sm2 else ''}",
                         "pass --force to replace it")
    if have_ca and not force:  # --sm2 on an existing RSA/ECDSA sandbox: add the SM2 PKI only
        info = {"sm2": add_sm2_sandbox_ca(directory), "added_sm2_only": True}
    else:
        info = init_sandbox_ca(directory, key_type=key_type, sm2=sm2)
    if info.get("added_sm2_only"):
        _report_sm2(directory, info["sm2"], as_json)
        return
    if as_json:
        emit_json({"directory": str(directory), "sandbox_only": True, "ca_cert": str(info["ca_cert"]),
                   "crl": str(info["crl"]), "trust_config": str(info["trust_config"]),
                   "departments": {slug: {"cert": str(i.cert_path), "key": str(i.key_path)}
                                   for slug, i in info["departments"].items()},
                   "platform": {"cert": str(info["platform"].cert_path), "key": str(info["platform"].key_path)},
                   "untrusted_signer": {"cert": str(info["untrusted_signer"].cert_path)},
                   "sm2": _sm2_json(info["sm2"])})
        return
    typer.echo(f"sandbox CA (SANDBOX ONLY, never use in production) written to {directory}")
    typer.echo(f"  root CA       {info['ca_cert']}")
    typer.echo(f"  CRL           {info['crl']}")
    typer.echo(f"  trust config  {info['trust_config']}")
    for slug, issued in info["departments"].items():
        typer.echo(f"  seal {slug:<8} {issued.cert_path}  key {issued.key_path}")
    typer.echo(f"  platform      {info['platform'].cert_path}  key {info['platform'].key_path}")
    typer.echo(f"  untrusted     {info['untrusted_signer'].cert_path} (issued by a CA nobody trusts; for tests)")
    if info["sm2"]:
        _report_sm2(directory, info["sm2"], False, heading=False)


def _sm2_json(sm2: dict | None) -> dict | None:
    if not sm2:
        return None
    return {"ca_cert": str(sm2["ca_cert"]), "crl": str(sm2["crl"]), "trust_config": str(sm2["trust_config"]),
            "departments": {slug: {"cert": str(i.cert_path), "key": str(i.key_path)}
                            for slug, i in sm2["departments"].items()},
            "untrusted_signer": {"cert": str(sm2["untrusted_signer"].cert_path)}}


def _report_sm2(directory: Path, sm2: dict, as_json: bool, *, heading: bool = True) -> None:
    if as_json:
        emit_json({"directory": str(directory), "sandbox_only": True, "sm2": _sm2_json(sm2)})
        return
    if heading:
        typer.echo(f"SM2 sandbox CA (SANDBOX ONLY, never use in production) added to {directory}")
    typer.echo(f"  SM2 root CA   {sm2['ca_cert']}")
    typer.echo(f"  SM2 CRL       {sm2['crl']}")
    for slug, issued in sm2["departments"].items():
        typer.echo(f"  SM2 seal {slug:<8} {issued.cert_path}  key {issued.key_path}")
    typer.echo(f"  SM2 untrusted {sm2['untrusted_signer'].cert_path} (issued by an SM2 CA nobody trusts; for tests)")
    typer.echo(f"  trust config  {sm2['trust_config']} (now trusts the SM2 root too)")
