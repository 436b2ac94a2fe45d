"""Writes test-vectors.json: the payload-encryption format pinned down for every implementation.

Deterministic (fixed keys and nonces), so `python generate.py --check` proves the committed file is
what this script writes. The cases are chosen to exercise what differs between languages: varint
lengths above 127 and 16,383, empty data, every byte value, unicode, two keys (rotation), and each
way a ciphertext can be wrong.

Only `cryptography` and the protobuf runtime that `temporalio` brings are needed.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload

OUT = Path(__file__).with_name("test-vectors.json")
KEYS = {"k-2026-11": bytes(range(32)), "k-2026-01": bytes([0xA5] * 32)}


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def as_json(p: Payload) -> dict:
    """The codec HTTP protocol's proto JSON form: metadata values and data in standard base64."""
    return {"metadata": {k: b64(v) for k, v in sorted(p.metadata.items())}, "data": b64(p.data)}


def seal(key_id: str, nonce: bytes, plaintext: bytes) -> bytes:
    return nonce + AESGCM(KEYS[key_id]).encrypt(nonce, plaintext, None)


def encrypted(key_id: str | None, data: bytes) -> dict:
    meta = {"encoding": b"binary/encrypted"}
    if key_id is not None:
        meta["encryption-key-id"] = key_id.encode()
    return {"metadata": {k: b64(v) for k, v in sorted(meta.items())}, "data": b64(data)}


def nonce(i: int) -> bytes:
    return bytes([i] * 11 + [0x42])


def build() -> dict:
    plain = [
        ("json string", Payload(metadata={"encoding": b"json/plain"}, data=b'"secret-marker"')),
        ("json object with unicode", Payload(metadata={"encoding": b"json/plain"},
                                             data=json.dumps({"patient": "Zoë Ø", "mrn": 4711, "note": "日本"},
                                                             ensure_ascii=False).encode())),
        ("null (empty data)", Payload(metadata={"encoding": b"binary/null"}, data=b"")),
        ("every byte value", Payload(metadata={"encoding": b"binary/plain"}, data=bytes(range(256)))),
        ("16 KiB + 1 (three-byte length varint)", Payload(metadata={"encoding": b"binary/plain"},
                                                          data=bytes(i % 251 for i in range(16385)))),
    ]
    encrypt = []
    for i, (name, p) in enumerate(plain):
        for key_id in (KEYS if len(p.data) < 1024 else ["k-2026-11"]):
            n = nonce(i * 2 + (key_id == "k-2026-01"))
            proto = p.SerializeToString()
            encrypt.append({
                "name": f"{name}, key {key_id}",
                "key_id": key_id,
                "nonce_hex": n.hex(),
                "payload": as_json(p),
                "payload_proto_hex": proto.hex(),
                "encrypted": encrypted(key_id, seal(key_id, n, proto)),
            })

    # Two metadata entries: protobuf map order is not canonical across languages (nor across runs
    # of one: Python's upb randomises it), so this case is decrypt-only (compare the decoded
    # payload, not the bytes an encoder would write); the file itself is written with sorted keys
    # so that it stays the same.
    multi = Payload(metadata={"encoding": b"json/protobuf", "messageType": b"temporal.api.common.v1.Payload"},
                    data=b'{"data":"eA=="}')
    decrypt_only = [{
        "name": "two metadata entries",
        "key_id": "k-2026-11",
        "payload": as_json(multi),
        "encrypted": encrypted("k-2026-11", seal("k-2026-11", nonce(40), multi.SerializeToString(deterministic=True))),
    }]

    pass_through = [as_json(p) for p in [
        Payload(metadata={"encoding": b"json/plain"}, data=b'"not encrypted"'),
        Payload(metadata={"encoding": b"binary/null"}, data=b""),
        Payload(metadata={"encoding": b"binary/encrypted-but-not-ours"}, data=b"\x00\x01"),
        Payload(metadata={}, data=b"no metadata at all"),
    ]]

    good = seal("k-2026-11", nonce(50), plain[0][1].SerializeToString())
    flip = lambda b, i: b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]
    tampered = [
        {"name": "tag changed", "reason": "authentication",
         "encrypted": encrypted("k-2026-11", flip(good, len(good) - 1))},
        {"name": "ciphertext changed", "reason": "authentication",
         "encrypted": encrypted("k-2026-11", flip(good, 12))},
        {"name": "nonce changed", "reason": "authentication",
         "encrypted": encrypted("k-2026-11", flip(good, 0))},
        {"name": "other key under this id", "reason": "authentication",
         "encrypted": encrypted("k-2026-01", good)},
        {"name": "unknown key id", "reason": "unknown-key",
         "encrypted": encrypted("k-1999-01", good)},
        {"name": "no key id", "reason": "unknown-key",
         "encrypted": encrypted(None, good)},
        {"name": "shorter than nonce and tag", "reason": "too-short",
         "encrypted": encrypted("k-2026-11", good[:27])},
        {"name": "decrypts, but not a Payload (truncated length-delimited field)", "reason": "not-a-payload",
         "encrypted": encrypted("k-2026-11", seal("k-2026-11", nonce(60), b"\x0a\xff"))},
    ]
    return {
        "format": "binary/encrypted: data = nonce(12) || AES-256-GCM(key, nonce, Payload protobuf bytes, no AAD) "
                  "|| tag(16); metadata encoding=binary/encrypted, encryption-key-id=<id>. See "
                  "docs/payload-encryption.md.",
        "how_to_check": [
            "keys: base64 of 32 bytes, by id; every key decrypts",
            "encrypt: serialising `payload` gives payload_proto_hex; sealing it with key_id and nonce_hex gives "
            "encrypted.data; decoding `encrypted` gives `payload`",
            "decrypt_only: decoding `encrypted` gives `payload` (compare fields, not bytes)",
            "pass_through: decoding returns each payload unchanged",
            "tampered: decoding fails; reason is one of authentication, unknown-key, too-short, not-a-payload",
            "proto JSON: metadata values and data are standard base64; metadata keys are sorted here",
        ],
        "keys": {k: b64(v) for k, v in KEYS.items()},
        "encrypt": encrypt,
        "decrypt_only": decrypt_only,
        "pass_through": pass_through,
        "tampered": tampered,
    }


def main() -> int:
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        if OUT.read_text() != text:
            print(f"{OUT} differs from what generate.py writes: run it and commit", file=sys.stderr)
            return 1
        print(f"{OUT.name}: up to date")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
