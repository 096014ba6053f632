"""SM2 signatures (GB/T 32918 / GM/T 0003) and SM3 digests (GB/T 32905) from gmalglib, plus the key encodings.

gmalglib (C, MIT) does the arithmetic; this module only adapts its byte conventions to the ones X.509 and
GB/T 38540 use:

    public key   65 bytes 04 || X || Y (uncompressed point), as in SubjectPublicKeyInfo
    private key  32-byte big-endian scalar d; stored as PKCS#8 (id-ecPublicKey, curve sm2p256v1), the way
                 OpenSSL 3 and GmSSL write SM2 keys
    signature    DER SEQUENCE { r INTEGER, s INTEGER } (GB/T 35276); gmalglib speaks raw r || s (64 bytes)
    user ID      the signer's distinguishing identifier hashed into Z_A; "1234567812345678" unless agreed
                 otherwise (GM/T 0009 default, also what OpenSSL uses for SM2 certificates)

`sign(..., k=…)` takes a fixed nonce only so the published GM/T 0003.5 example can be reproduced in tests.
"""
from __future__ import annotations

from asn1crypto import algos, core, keys, pem
from gmalglib.sm2 import SM2
from gmalglib.sm3 import SM3

SM2_CURVE_OID = "1.2.156.10197.1.301"      # sm2p256v1
SM2_SM3_OID = "1.2.156.10197.1.501"        # SM2 signature with SM3 (SM2-with-SM3)
SM3_OID = "1.2.156.10197.1.401"
DEFAULT_UID = b"1234567812345678"

# asn1crypto knows the OIDs only once told; registering the curve lets keys.PublicKeyInfo name it.
if SM2_CURVE_OID not in keys.NamedCurve._map:
    keys.NamedCurve.register("sm2p256v1", SM2_CURVE_OID, 32)
if SM2_SM3_OID not in algos.SignedDigestAlgorithmId._map:
    algos.SignedDigestAlgorithmId._map[SM2_SM3_OID] = "sm2_sm3"
    algos.SignedDigestAlgorithmId._reverse_map = None


class SM2Error(ValueError):
    """A key, public key or signature is not a usable SM2 value."""


def sm3(data: bytes) -> bytes:
    """SM3 digest (32 bytes) of `data`."""
    return SM3(bytes(data)).digest()


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh (private scalar, 65-byte public point) pair from the OS random source."""
    return SM2().generate_keypair()


def public_key_of(private_key: bytes) -> bytes:
    return SM2.get_pk(private_key)


def raw_to_der(raw: bytes) -> bytes:
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return algos.DSASignature({"r": r, "s": s}).dump()


def der_to_raw(signature: bytes) -> bytes:
    try:
        parsed = algos.DSASignature.load(bytes(signature), strict=True)
        r, s = parsed["r"].native, parsed["s"].native
    except (ValueError, TypeError) as exc:
        raise SM2Error(f"SM2 signature is not a DER SEQUENCE {{r, s}}: {exc}") from None
    if not (0 < r < 2 ** 256 and 0 < s < 2 ** 256):
        raise SM2Error("SM2 signature r or s is out of range")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign(private_key: bytes, message: bytes, *, uid: bytes = DEFAULT_UID, k: bytes | None = None) -> bytes:
    """SM2-sign `message` (Z_A and SM3 are applied here); returns the DER signature."""
    if not SM2.is_sk_valid(private_key):
        raise SM2Error("not a valid SM2 private key")
    options = {}
    if k is not None:
        # gmalglib reads the random bytes as a little-endian integer; the standard prints k big-endian.
        options["rnd_fn"] = lambda n: k[::-1]
    return raw_to_der(SM2(sk=private_key, uid=uid, **options).sign(bytes(message)))


def verify(public_key: bytes, message: bytes, signature: bytes, *, uid: bytes = DEFAULT_UID) -> bool:
    """True when `signature` (DER) is `public_key`'s SM2 signature over `message` under `uid`."""
    if not SM2.is_pk_valid(public_key):
        raise SM2Error("the public key is not a point on the SM2 curve")
    raw = der_to_raw(signature)
    return bool(SM2(pk=public_key, uid=uid).verify(bytes(message), raw))


# ---------------------------------------------------------------------------------------- key encodings

def _curve_parameters() -> keys.ECDomainParameters:
    return keys.ECDomainParameters(name="named", value=SM2_CURVE_OID)


def public_key_info(public_key: bytes) -> keys.PublicKeyInfo:
    """SubjectPublicKeyInfo for an SM2 public point (id-ecPublicKey with the sm2p256v1 curve)."""
    return keys.PublicKeyInfo({
        "algorithm": keys.PublicKeyAlgorithm({"algorithm": "ec", "parameters": _curve_parameters()}),
        "public_key": public_key,
    })


def public_key_from_info(info: keys.PublicKeyInfo) -> bytes:
    """The 65-byte point from a SubjectPublicKeyInfo; SM2Error when it is not an SM2 key."""
    algorithm = info["algorithm"]
    if algorithm["algorithm"].native != "ec" or algorithm["parameters"].chosen.dotted != SM2_CURVE_OID:
        raise SM2Error(f"the certificate's public key is {algorithm['algorithm'].native}, not SM2 (sm2p256v1)")
    point = bytes(info["public_key"])
    if not SM2.is_pk_valid(point):
        raise SM2Error("the certificate's public key is not a point on the SM2 curve")
    return point


def private_key_pem(private_key: bytes) -> bytes:
    """PKCS#8 PEM (unencrypted) of an SM2 private scalar."""
    inner = keys.ECPrivateKey({
        "version": "ecPrivkeyVer1",
        "private_key": int.from_bytes(private_key, "big"),
        "public_key": public_key_of(private_key),
    })
    info = keys.PrivateKeyInfo({
        "version": 0,
        "private_key_algorithm": keys.PrivateKeyAlgorithm({"algorithm": "ec", "parameters": _curve_parameters()}),
        "private_key": inner,
    })
    return pem.armor("PRIVATE KEY", info.dump())


def load_private_key_pem(data: bytes) -> bytes:
    """The private scalar from PKCS#8 (or SEC1 "EC PRIVATE KEY") PEM; `#` comment lines are ignored."""
    text = b"".join(line for line in data.splitlines(keepends=True) if not line.lstrip().startswith(b"#"))
    try:
        kind, _headers, der = pem.unarmor(text.strip())
        if kind == "EC PRIVATE KEY":
            scalar = keys.ECPrivateKey.load(der)["private_key"].native
        elif kind == "PRIVATE KEY":
            info = keys.PrivateKeyInfo.load(der)
            parameters = info["private_key_algorithm"]["parameters"]
            if info["private_key_algorithm"]["algorithm"].native != "ec" or \
                    parameters.chosen.dotted != SM2_CURVE_OID:
                raise SM2Error("the key is not an SM2 (sm2p256v1) key")
            scalar = info["private_key"].parsed["private_key"].native
        else:
            raise SM2Error(f"PEM block is {kind!r}, not a private key")
    except SM2Error:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SM2Error(f"not an SM2 private key PEM: {exc}") from None
    key = int(scalar).to_bytes(32, "big")
    if not SM2.is_sk_valid(key):
        raise SM2Error("not a valid SM2 private key")
    return key


__all__ = ["DEFAULT_UID", "SM2Error", "SM2_CURVE_OID", "SM2_SM3_OID", "SM3_OID", "core", "generate_keypair",
           "load_private_key_pem", "private_key_pem", "public_key_from_info", "public_key_info", "public_key_of",
           "der_to_raw", "raw_to_der", "sign", "sm3", "verify"]
