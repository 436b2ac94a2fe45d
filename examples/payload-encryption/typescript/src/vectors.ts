// Checks the codec against the shared test vectors (examples/payload-encryption/vectors/test-vectors.json).
import { readFileSync } from 'node:fs';
import type { Payload } from '@temporalio/common';
import { CodecError, EncryptionCodec, serialisePayload } from './codec';

interface JsonPayload {
  metadata: Record<string, string>;
  data: string;
}
interface Vectors {
  keys: Record<string, string>;
  encrypt: Array<{ name: string; key_id: string; nonce_hex: string; payload: JsonPayload; payload_proto_hex: string; encrypted: JsonPayload }>;
  decrypt_only: Array<{ name: string; key_id: string; payload: JsonPayload; encrypted: JsonPayload }>;
  pass_through: JsonPayload[];
  tampered: Array<{ name: string; reason: string; encrypted: JsonPayload }>;
}

const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

export function fromJson(j: JsonPayload): Payload {
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(j.metadata ?? {})) metadata[k] = b64(v);
  return { metadata, data: b64(j.data ?? '') };
}

export function toJson(p: Payload): JsonPayload {
  const metadata: Record<string, string> = {};
  for (const k of Object.keys(p.metadata ?? {}).sort()) metadata[k] = Buffer.from(p.metadata![k]).toString('base64');
  return { metadata, data: Buffer.from(p.data ?? new Uint8Array(0)).toString('base64') };
}

/** Field comparison (metadata entries and data), not byte comparison. */
function samePayload(a: Payload, b: Payload): boolean {
  return JSON.stringify(toJson(a)) === JSON.stringify(toJson(b));
}

/** Returns the number of failures; prints one line per group and one per failing case. */
export async function checkVectors(file: string): Promise<number> {
  const v = JSON.parse(readFileSync(file, 'utf8')) as Vectors;
  const keys = new Map(Object.entries(v.keys).map(([id, k]) => [id, b64(k)] as [string, Uint8Array]));
  const codec = new EncryptionCodec(keys, Object.keys(v.keys)[0]);
  let failures = 0;
  const group = async <T>(name: string, cases: T[], check: (c: T) => Promise<string | undefined>, label: (c: T, i: number) => string) => {
    let bad = 0;
    for (const [i, c] of cases.entries()) {
      let problem: string | undefined;
      try {
        problem = await check(c);
      } catch (e) {
        problem = `unexpected error: ${(e as Error).message}`;
      }
      if (problem) {
        bad++;
        console.log(`  FAIL ${name}[${i}] ${label(c, i)}: ${problem}`);
      }
    }
    failures += bad;
    console.log(`${name}: ${cases.length - bad}/${cases.length} ok`);
  };

  await group('encrypt', v.encrypt, async (c) => {
    const plain = fromJson(c.payload);
    if (hex(serialisePayload(plain)) !== c.payload_proto_hex) return 'serialisation differs from payload_proto_hex';
    const enc = codec.encryptWithNonce(plain, c.key_id, Buffer.from(c.nonce_hex, 'hex'));
    if (JSON.stringify(toJson(enc)) !== JSON.stringify(toJson(fromJson(c.encrypted)))) return 'encrypted payload differs';
    const [dec] = await codec.decode([fromJson(c.encrypted)]);
    if (!samePayload(dec, plain)) return 'decoding `encrypted` does not give `payload`';
    const [round] = await codec.decode(await codec.encode([plain]));
    if (!samePayload(round, plain)) return 'random-nonce round trip differs';
    return undefined;
  }, (c) => c.name);

  await group('decrypt_only', v.decrypt_only, async (c) => {
    const [dec] = await codec.decode([fromJson(c.encrypted)]);
    return samePayload(dec, fromJson(c.payload)) ? undefined : 'decoded payload differs';
  }, (c) => c.name);

  await group('pass_through', v.pass_through, async (c) => {
    const p = fromJson(c);
    const [dec] = await codec.decode([p]);
    return dec === p && samePayload(dec, fromJson(c)) ? undefined : 'not returned unchanged';
  }, (_c, i) => `#${i}`);

  await group('tampered', v.tampered, async (c) => {
    try {
      await codec.decode([fromJson(c.encrypted)]);
    } catch (e) {
      if (e instanceof CodecError) return e.reason === c.reason ? undefined : `failed with reason ${e.reason}, expected ${c.reason}`;
      return `failed without a reason category: ${(e as Error).message}`;
    }
    return 'decoded, expected a failure';
  }, (c) => c.name);

  return failures;
}
