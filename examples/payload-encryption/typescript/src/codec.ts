/**
 * Worker-side payload encryption for the Temporal TypeScript SDK.
 *
 * Produces exactly the format `temporal-bootstrap codec-server` decrypts
 * (docs/payload-encryption.md, section 1):
 *
 * - metadata `encoding` = `binary/encrypted`, `encryption-key-id` = the key id (UTF-8);
 * - data = 12-byte random nonce ‖ AES-256-GCM(key, nonce, Payload protobuf bytes, no AAD) ‖ 16-byte tag;
 * - payloads whose `encoding` is not `binary/encrypted` are returned unchanged by `decode`.
 *
 * Every configured key decrypts; only the current one encrypts, so rotating keeps old histories
 * readable. Plaintext keys live in this process's memory only.
 *
 * This module runs outside the workflow sandbox only (the client's and the worker's
 * `dataConverter.payloadCodecs`); workflow code never imports it.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export const ENCODING = 'binary/encrypted';
export const KEY_ID = 'encryption-key-id';
export const NONCE_LEN = 12;
export const TAG_LEN = 16;
export const KEY_LEN = 32;

const ProtoPayload = temporal.api.common.v1.Payload;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Why a payload could not be decoded: the categories of test-vectors.json `tampered[].reason`. */
export type FailureReason = 'authentication' | 'unknown-key' | 'too-short' | 'not-a-payload';

export class CodecError extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
    this.name = 'CodecError';
  }
}

/**
 * The protobuf binary form of a Payload, as every SDK writes it: metadata entries, then `data`
 * when it is not empty (proto3 leaves empty fields out), then any external-payload details.
 */
export function serialisePayload(p: Payload): Uint8Array {
  const msg: temporal.api.common.v1.IPayload = { metadata: p.metadata ?? {} };
  if (p.data && p.data.length > 0) msg.data = p.data;
  if (p.externalPayloads && p.externalPayloads.length > 0) msg.externalPayloads = p.externalPayloads;
  return ProtoPayload.encode(msg).finish();
}

export function parsePayload(bytes: Uint8Array): Payload {
  const m = ProtoPayload.decode(bytes);
  const out: Payload = { metadata: { ...m.metadata }, data: m.data ?? new Uint8Array(0) };
  if (m.externalPayloads && m.externalPayloads.length > 0) out.externalPayloads = m.externalPayloads;
  return out;
}

function metaString(p: Payload, name: string): string | undefined {
  const v = p.metadata?.[name];
  return v == null ? undefined : fromUtf8.decode(v);
}

export class EncryptionCodec implements PayloadCodec {
  private readonly keys: Map<string, Buffer>;

  constructor(
    keys: Map<string, Uint8Array>,
    readonly currentKeyId: string,
  ) {
    this.keys = new Map();
    for (const [id, key] of keys) {
      if (key.length !== KEY_LEN) throw new Error(`key ${id}: expected ${KEY_LEN} bytes, found ${key.length}`);
      this.keys.set(id, Buffer.from(key));
    }
    if (!this.keys.has(currentKeyId)) throw new Error(`current key ${JSON.stringify(currentKeyId)} is not among the keys`);
  }

  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    // A fresh random nonce for every payload (at most 2^32 per key, see the docs).
    return payloads.map((p) => this.encryptWithNonce(p, this.currentKeyId, randomBytes(NONCE_LEN)));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.decryptOne(p));
  }

  /**
   * Encrypts one payload with the given key and nonce. Test hook for the shared test vectors
   * (`vectors` command); `encode` always passes a fresh random nonce.
   */
  encryptWithNonce(p: Payload, keyId: string, nonce: Uint8Array): Payload {
    const key = this.keys.get(keyId);
    if (!key) throw new Error(`unknown encryption key id ${JSON.stringify(keyId)}`);
    if (nonce.length !== NONCE_LEN) throw new Error(`nonce must be ${NONCE_LEN} bytes`);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LEN });
    const sealed = Buffer.concat([nonce, cipher.update(serialisePayload(p)), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: { encoding: utf8.encode(ENCODING), [KEY_ID]: utf8.encode(keyId) },
      data: new Uint8Array(sealed),
    };
  }

  private decryptOne(p: Payload): Payload {
    if (metaString(p, 'encoding') !== ENCODING) return p;
    const keyId = metaString(p, KEY_ID);
    const key = keyId === undefined ? undefined : this.keys.get(keyId);
    if (!key) {
      throw new CodecError('unknown-key', `unknown encryption key id ${JSON.stringify(keyId ?? '')}`);
    }
    const data = Buffer.from(p.data ?? new Uint8Array(0));
    if (data.length < NONCE_LEN + TAG_LEN) {
      throw new CodecError('too-short', `encrypted payload of ${data.length} bytes is shorter than nonce and tag (${NONCE_LEN + TAG_LEN})`);
    }
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, NONCE_LEN), { authTagLength: TAG_LEN });
    decipher.setAuthTag(data.subarray(data.length - TAG_LEN));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(NONCE_LEN, data.length - TAG_LEN)), decipher.final()]);
    } catch {
      throw new CodecError('authentication', `payload with key id ${JSON.stringify(keyId)} failed authentication (tampered, or another key under this id)`);
    }
    try {
      return parsePayload(plain);
    } catch (e) {
      throw new CodecError('not-a-payload', `decrypted bytes are not a Payload: ${(e as Error).message}`);
    }
  }
}

/** `id=path[,id=path...]` from an environment variable; errors name the variable. */
function parseKeyList(variable: string): Array<[string, string]> {
  const raw = process.env[variable] ?? '';
  const out: Array<[string, string]> = [];
  for (const item of raw.split(',')) {
    const pair = item.trim();
    if (!pair) continue;
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new Error(`${variable}: ${JSON.stringify(pair)} is not id=path`);
    out.push([pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()]);
  }
  return out;
}

function readLine(variable: string, id: string, path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new Error(`${variable}: key ${id}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Strict standard base64 of exactly 32 bytes. */
function decodeKey(text: string, where: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new Error(`${where}: expected one line of standard base64 holding ${KEY_LEN} key bytes`);
  }
  const key = Buffer.from(text, 'base64');
  if (key.length !== KEY_LEN) throw new Error(`${where}: expected ${KEY_LEN} key bytes, found ${key.length}`);
  return key;
}

/** Unwraps an envelope key with Transit's decrypt endpoint (OpenBao or Vault). */
async function unwrap(id: string, path: string, ciphertext: string): Promise<Buffer> {
  const where = `CODEC_WRAPPED_KEY_FILES: key ${id} (${path})`;
  const addr = process.env.VAULT_ADDR;
  const token = process.env.VAULT_TOKEN;
  const mount = process.env.CODEC_TRANSIT_MOUNT || 'transit';
  const transitKey = process.env.CODEC_TRANSIT_KEY;
  for (const [name, value] of [['VAULT_ADDR', addr], ['VAULT_TOKEN', token], ['CODEC_TRANSIT_KEY', transitKey]]) {
    if (!value) throw new Error(`${where}: ${name} is not set (needed to unwrap envelope keys)`);
  }
  if (!ciphertext.startsWith('vault:v')) throw new Error(`${where}: not a Transit ciphertext (vault:v1:...)`);
  const url = `${addr!.replace(/\/+$/, '')}/v1/${mount}/decrypt/${encodeURIComponent(transitKey!)}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'X-Vault-Token': token!, 'Content-Type': 'application/json' },
      body: JSON.stringify({ ciphertext }),
    });
  } catch (e) {
    throw new Error(`${where}: POST ${url}: ${(e as Error).message}`);
  }
  const body = (await res.json().catch(() => ({}))) as { data?: { plaintext?: string }; errors?: string[] };
  if (!res.ok || !body.data?.plaintext) {
    throw new Error(`${where}: POST ${url}: HTTP ${res.status} ${(body.errors ?? []).join('; ')}`);
  }
  return decodeKey(body.data.plaintext, `${where}: the unwrapped key`);
}

/**
 * Keys from the environment (examples/payload-encryption/README.md): CODEC_KEY_FILES,
 * CODEC_WRAPPED_KEY_FILES (unwrapped through Transit at start), CODEC_CURRENT_KEY (default: the
 * first listed, plain keys first).
 */
export async function codecFromEnv(): Promise<EncryptionCodec> {
  const keys = new Map<string, Uint8Array>();
  const add = (variable: string, id: string, key: Uint8Array) => {
    if (keys.has(id)) throw new Error(`${variable}: key id ${id} is listed twice`);
    keys.set(id, key);
  };
  for (const [id, path] of parseKeyList('CODEC_KEY_FILES')) {
    add('CODEC_KEY_FILES', id, decodeKey(readLine('CODEC_KEY_FILES', id, path), `CODEC_KEY_FILES: key ${id} (${path})`));
  }
  for (const [id, path] of parseKeyList('CODEC_WRAPPED_KEY_FILES')) {
    add('CODEC_WRAPPED_KEY_FILES', id, await unwrap(id, path, readLine('CODEC_WRAPPED_KEY_FILES', id, path)));
  }
  if (keys.size === 0) throw new Error('CODEC_KEY_FILES or CODEC_WRAPPED_KEY_FILES must be set (id=path[,id=path...])');
  const current = process.env.CODEC_CURRENT_KEY || keys.keys().next().value!;
  if (!keys.has(current)) throw new Error(`CODEC_CURRENT_KEY: ${JSON.stringify(current)} is not among the configured key ids (${[...keys.keys()].join(', ')})`);
  return new EncryptionCodec(keys, current);
}
