"""Worker-side payload encryption for the Temporal Python SDK.

Produces exactly the format `temporal-bootstrap codec-server` decrypts (docs/payload-encryption.md):

- metadata ``encoding`` = ``binary/encrypted`` and ``encryption-key-id`` = the key id;
- data = 12-byte random nonce || AES-256-GCM(key, nonce, Payload.SerializeToString()) (tag at the end);
- payloads without ``encoding: binary/encrypted`` are passed through unchanged by ``decode``.

Keys are the files written by ``temporal-bootstrap codec keygen`` (32 random bytes, base64), or envelope
keys (``codec keygen --kms vault-transit``: a Transit ciphertext ``vault:v1:...``) unwrapped at start
through OpenBao/Vault Transit and kept in memory only. Every key decrypts; only the current one
encrypts, so rotating keeps old histories readable.

Decoding failures raise ``CodecError`` (a ``ValueError``) whose ``reason`` is one of
``authentication``, ``unknown-key``, ``too-short``, ``not-a-payload`` (the categories of
``vectors/test-vectors.json``).

Requires: ``pip install temporalio cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = "binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32


class CodecError(ValueError):
    """A payload that cannot be decoded; ``reason`` is the category of the failure."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _decode_key(text: bytes | str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: expected one line of standard base64 holding {KEY_LEN} key bytes") from None
    if len(key) != KEY_LEN:
        raise ValueError(f"{where}: expected {KEY_LEN} key bytes, found {len(key)}")
    return key


def _read_line(path: str, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except OSError as e:
        raise ValueError(f"{where}: cannot read {path}: {e.strerror or e}") from None


def load_key(path: str, where: str | None = None) -> bytes:
    """Reads a key file written by `temporal-bootstrap codec keygen`."""
    where = where or path
    return _decode_key(_read_line(path, where), where)


def unwrap_key(ciphertext: str, where: str) -> bytes:
    """Unwraps an envelope key with Transit's decrypt endpoint (OpenBao or Vault)."""
    env = {name: os.environ.get(name, "") for name in ("VAULT_ADDR", "VAULT_TOKEN", "CODEC_TRANSIT_KEY")}
    for name, value in env.items():
        if not value:
            raise ValueError(f"{where}: {name} is not set (needed to unwrap envelope keys)")
    if not ciphertext.startswith("vault:v"):
        raise ValueError(f"{where}: not a Transit ciphertext (vault:v1:...)")
    mount = os.environ.get("CODEC_TRANSIT_MOUNT") or "transit"
    url = f"{env['VAULT_ADDR'].rstrip('/')}/v1/{mount}/decrypt/{env['CODEC_TRANSIT_KEY']}"
    req = urllib.request.Request(
        url,
        data=json.dumps({"ciphertext": ciphertext}).encode(),
        headers={"X-Vault-Token": env["VAULT_TOKEN"], "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            body = json.load(res)
    except urllib.error.HTTPError as e:
        try:
            errors = "; ".join(json.load(e).get("errors", []))
        except ValueError:
            errors = ""
        raise ValueError(f"{where}: POST {url}: HTTP {e.code} {errors}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ValueError(f"{where}: POST {url}: {e}") from None
    plaintext = (body.get("data") or {}).get("plaintext")
    if not plaintext:
        raise ValueError(f"{where}: POST {url}: no data.plaintext in the answer")
    return _decode_key(plaintext, f"{where}: the unwrapped key")


def _key_list(variable: str) -> list[tuple[str, str]]:
    out = []
    for item in os.environ.get(variable, "").split(","):
        pair = item.strip()
        if not pair:
            continue
        key_id, sep, path = pair.partition("=")
        if not sep or not key_id.strip() or not path.strip():
            raise ValueError(f"{variable}: {pair!r} is not id=path")
        out.append((key_id.strip(), path.strip()))
    return out


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec with named keys (one current, all usable for decryption)."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        super().__init__()
        for key_id, key in keys.items():
            if len(key) != KEY_LEN:
                raise ValueError(f"key {key_id}: expected {KEY_LEN} bytes, found {len(key)}")
        if current not in keys:
            raise ValueError(f"current key {current!r} is not among the keys")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    @classmethod
    def from_env(cls) -> "EncryptionCodec":
        """Keys from the environment.

        ``CODEC_KEY_FILES``: comma-separated ``id=path`` pairs (e.g. ``k2=/keys/k2,k1=/keys/k1``);
        ``CODEC_WRAPPED_KEY_FILES``: ``id=path`` pairs of envelope keys (one line ``vault:v1:...``),
        unwrapped with ``POST $VAULT_ADDR/v1/$CODEC_TRANSIT_MOUNT/decrypt/$CODEC_TRANSIT_KEY``;
        ``CODEC_CURRENT_KEY``: the id that encrypts (default: the first pair, plain keys first).
        """
        keys: dict[str, bytes] = {}
        for variable in ("CODEC_KEY_FILES", "CODEC_WRAPPED_KEY_FILES"):
            for key_id, path in _key_list(variable):
                if key_id in keys:
                    raise ValueError(f"{variable}: key id {key_id} is listed twice")
                where = f"{variable}: key {key_id} ({path})"
                if variable == "CODEC_KEY_FILES":
                    keys[key_id] = load_key(path, where)
                else:
                    keys[key_id] = unwrap_key(_read_line(path, where).decode(errors="replace"), where)
        if not keys:
            raise ValueError("CODEC_KEY_FILES or CODEC_WRAPPED_KEY_FILES must be set (id=path[,id=path...])")
        current = os.environ.get("CODEC_CURRENT_KEY") or next(iter(keys))
        if current not in keys:
            raise ValueError(f"CODEC_CURRENT_KEY: {current!r} is not among the configured key ids ({', '.join(keys)})")
        return cls(keys, current)

    @property
    def current_key_id(self) -> str:
        return self._current

    def encrypt_with_nonce(self, p: Payload, key_id: str, nonce: bytes) -> Payload:
        """Encrypts one payload with the given key and nonce.

        Test hook for the shared test vectors; ``encode`` always uses a fresh random nonce.
        """
        aead = self._aead.get(key_id)
        if aead is None:
            raise ValueError(f"unknown encryption key id {key_id!r}")
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"nonce must be {NONCE_LEN} bytes")
        sealed = aead.encrypt(nonce, p.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING.encode(), KEY_ID: key_id.encode()},
            data=nonce + sealed,
        )

    def decode_one(self, p: Payload) -> Payload:
        if p.metadata.get("encoding", b"") != ENCODING.encode():
            return p
        key_id = p.metadata.get(KEY_ID, b"").decode(errors="replace")
        aead = self._aead.get(key_id)
        if aead is None:
            raise CodecError("unknown-key", f"unknown encryption key id {key_id!r}")
        if len(p.data) < NONCE_LEN + TAG_LEN:
            raise CodecError(
                "too-short",
                f"encrypted payload of {len(p.data)} bytes is shorter than nonce and tag ({NONCE_LEN + TAG_LEN})",
            )
        try:
            plain = aead.decrypt(p.data[:NONCE_LEN], p.data[NONCE_LEN:], None)
        except InvalidTag:
            raise CodecError(
                "authentication",
                f"payload with key id {key_id!r} failed authentication (tampered, or another key under this id)",
            ) from None
        try:
            return Payload.FromString(plain)
        except DecodeError as e:
            raise CodecError("not-a-payload", f"decrypted bytes are not a Payload: {e}") from None

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        # A fresh random nonce for every payload (at most 2^32 per key, see the docs).
        return [self.encrypt_with_nonce(p, self._current, os.urandom(NONCE_LEN)) for p in payloads]

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]
