"""国密 electronic seals: SM2/SM3 (gmalglib) and the GB/T 38540 SES_Seal / SES_Signature structures (asn1crypto).

    primitives  SM2 sign/verify, SM3, key encodings
    structures  the ASN.1 of GB/T 38540 and tongban's one-file container
    ca          the SANDBOX ONLY SM2 CA (`tongban certs init --sm2`)
    trust       SM2 CAs and CRLs, chain checks with the XAdES reason codes
    signer      make seals and sealed documents (`tongban seal sign --alg sm2`)
    verifier    verify them (`tongban.seal.verify_sealed` dispatches here for DER input)
"""
