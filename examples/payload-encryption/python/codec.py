"""Worker-side payload encryption for the Temporal Python SDK.

Produces exactly the format `temporal-bootstrap codec-server` decrypts (docs/payload-encryption.md):

- metadata ``encoding`` = ``binary/encrypted`` and ``encryption-key-id`` = the key id;
- data = 12-byte random nonce || AES-256-GCM(key, nonce, Payload.SerializeToString()) (tag at the end);
- payloads without ``encoding: binary/encrypted`` are passed through unchanged by ``decode``.

Keys are the files written by ``temporal-bootstrap codec keygen`` (32 random bytes, base64). Every key
decrypts; only the current one encrypts, so rotating keeps old histories readable.

Requires: ``pip install temporalio cryptography``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = "binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_LEN = 12


def load_key(path: str) -> bytes:
    """Reads a key file written by `temporal-bootstrap codec keygen`."""
    with open(path, "rb") as f:
        key = base64.b64decode(f.read().strip(), validate=True)
    if len(key) != 32:
        raise ValueError(f"{path}: expected 32 key bytes, found {len(key)}")
    return key


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec with named keys (one current, all usable for decryption)."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        super().__init__()
        if current not in keys:
            raise ValueError(f"current key {current!r} is not among the keys")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    @classmethod
    def from_env(cls) -> "EncryptionCodec":
        """Keys from the environment.

        ``CODEC_KEY_FILES``: comma-separated ``id=path`` pairs (e.g. ``k2=/keys/k2,k1=/keys/k1``);
        ``CODEC_CURRENT_KEY``: the id that encrypts (default: the first pair).
        """
        pairs = [p for p in os.environ.get("CODEC_KEY_FILES", "").split(",") if p.strip()]
        if not pairs:
            raise ValueError("CODEC_KEY_FILES is not set (id=path[,id=path...])")
        keys: dict[str, bytes] = {}
        for pair in pairs:
            key_id, _, path = pair.strip().partition("=")
            keys[key_id] = load_key(path)
        current = os.environ.get("CODEC_CURRENT_KEY") or next(iter(keys))
        return cls(keys, current)

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        aead = self._aead[self._current]
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE_LEN)
            sealed = aead.encrypt(nonce, p.SerializeToString(), None)
            out.append(
                Payload(
                    metadata={
                        "encoding": ENCODING.encode(),
                        KEY_ID: self._current.encode(),
                    },
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding", b"").decode() != ENCODING:
                out.append(p)
                continue
            key_id = p.metadata.get(KEY_ID, b"").decode()
            aead = self._aead.get(key_id)
            if aead is None:
                raise ValueError(f"unknown encryption key id {key_id!r}")
            plain = aead.decrypt(p.data[:NONCE_LEN], p.data[NONCE_LEN:], None)
            out.append(Payload.FromString(plain))
        return out
