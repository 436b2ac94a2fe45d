"""Key material for scripts/checks/codec-web-ui, written into DIR (nothing leaves it).

  python material.py DIR

Writes:
  codec.pem, codec-key.pem   a self-signed P-256 certificate for 127.0.0.1 (the codec server's
                             HTTPS: the Web UI only sends the access token to an https:// endpoint)
  codec.spki                 base64 SHA-256 of its SubjectPublicKeyInfo (Chromium's
                             --ignore-certificate-errors-spki-list pins exactly this key)
  jwks.json                  the identity provider's public key (ES256, kid "idp-web-ui")
  tokens.json                OIDC-style tokens signed by that key: for each caller an access token
                             (aud temporal-codec, what the codec server checks) and an ID token
                             (aud the UI's client id, what the UI sends as Authorization-Extras)
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import sys
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ISSUER = "https://idp.web-ui.test"
AUDIENCE = "temporal-codec"
CLIENT_ID = "temporal-web-ui"
KID = "idp-web-ui"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def write(path: str, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def certificate(out: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "codec-web-ui-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    write(os.path.join(out, "codec.pem"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write(
        os.path.join(out, "codec-key.pem"),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write(os.path.join(out, "codec.spki"), base64.b64encode(hashlib.sha256(spki).digest()), 0o644)


def main() -> None:
    out = sys.argv[1]
    certificate(out)

    idp = ec.generate_private_key(ec.SECP256R1())
    nums = idp.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "kid": KID,
                "use": "sig",
                "alg": "ES256",
                "x": b64u(nums.x.to_bytes(32, "big")),
                "y": b64u(nums.y.to_bytes(32, "big")),
            }
        ]
    }
    write(os.path.join(out, "jwks.json"), json.dumps(jwks).encode(), 0o644)

    def sign(claims: dict) -> str:
        head = b64u(json.dumps({"alg": "ES256", "typ": "JWT", "kid": KID}).encode())
        body = b64u(json.dumps(claims).encode())
        der = idp.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{head}.{body}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    now = int(time.time())
    tokens = {}
    for who, groups in (("oncall", ["default-oncall"]), ("outsider", ["other-team-oncall"])):
        email = f"{who}@web-ui.test"
        common = {"iss": ISSUER, "sub": str(uuid.uuid4()), "email": email, "iat": now,
                  "exp": now + 3600}
        tokens[who] = {
            "email": email,
            "caller": f"jwt:{email}",
            "accessToken": sign({**common, "aud": AUDIENCE, "groups": groups,
                                 "scope": "openid profile email"}),
            "idToken": sign({**common, "aud": CLIENT_ID, "name": who,
                             "nonce": uuid.uuid4().hex, "azp": CLIENT_ID}),
        }
    write(os.path.join(out, "tokens.json"), json.dumps(tokens).encode())


if __name__ == "__main__":
    main()
