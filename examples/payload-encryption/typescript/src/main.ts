/**
 * Entry point: `node lib/main.js COMMAND [options]` (see README.md and
 * examples/payload-encryption/README.md for the interface shared by the four SDK examples).
 *
 *   vectors FILE
 *   worker --task-queue Q [--activities-only]
 *   run --task-queue Q --workflow-id W --input S
 *   start --task-queue Q --workflow-id W --input S [--workflow-type T]
 *   decode-history --workflow-id W
 *
 * Keys: CODEC_KEY_FILES, CODEC_WRAPPED_KEY_FILES (+ VAULT_ADDR, VAULT_TOKEN, CODEC_TRANSIT_MOUNT,
 * CODEC_TRANSIT_KEY), CODEC_CURRENT_KEY. Connection: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY, TEMPORAL_TLS_SERVER_NAME.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from './activities';
import { codecFromEnv, type EncryptionCodec } from './codec';
import { checkVectors, toJson } from './vectors';

const USAGE = `usage: node lib/main.js COMMAND
  vectors FILE
  worker --task-queue Q [--activities-only]
  run --task-queue Q --workflow-id W --input S
  start --task-queue Q --workflow-id W --input S [--workflow-type T]
  decode-history --workflow-id W`;

class UsageError extends Error {}

function readEnvFile(variable: string): Buffer {
  const path = process.env[variable]!;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`${variable}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** TEMPORAL_TLS_*: mTLS when a client certificate is set, server-verified TLS when only the CA is. */
function tlsFromEnv(): TLSConfig | undefined {
  const { TEMPORAL_TLS_CA: ca, TEMPORAL_TLS_CERT: cert, TEMPORAL_TLS_KEY: key, TEMPORAL_TLS_SERVER_NAME: name } = process.env;
  if (!ca && !cert && !key) return undefined;
  if (!cert !== !key) throw new Error('TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together');
  const tls: TLSConfig = {};
  if (ca) tls.serverRootCACertificate = readEnvFile('TEMPORAL_TLS_CA');
  if (cert) tls.clientCertPair = { crt: readEnvFile('TEMPORAL_TLS_CERT'), key: readEnvFile('TEMPORAL_TLS_KEY') };
  if (name) tls.serverNameOverride = name;
  return tls;
}

const address = () => process.env.TEMPORAL_ADDRESS || '127.0.0.1:7233';
const namespace = () => process.env.TEMPORAL_NAMESPACE || 'default';

async function client(codec: EncryptionCodec): Promise<Client> {
  const connection = await Connection.connect({ address: address(), tls: tlsFromEnv() });
  return new Client({ connection, namespace: namespace(), dataConverter: { payloadCodecs: [codec] } });
}

async function worker(codec: EncryptionCodec, taskQueue: string, activitiesOnly: boolean): Promise<Worker> {
  const connection = await NativeConnection.connect({ address: address(), tls: tlsFromEnv() });
  return await Worker.create({
    connection,
    namespace: namespace(),
    taskQueue,
    // The workflow bundle holds workflows.ts only; the codec runs here, outside the sandbox.
    ...(activitiesOnly ? {} : { workflowsPath: require.resolve('./workflows') }),
    activities,
    dataConverter: { payloadCodecs: [codec] },
  });
}

function options(args: string[], names: string[], flags: string[] = []) {
  const spec: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const n of names) spec[n] = { type: 'string' };
  for (const f of flags) spec[f] = { type: 'boolean' };
  try {
    return parseArgs({ args, options: spec, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const shortId = () => randomUUID().slice(0, 8);

function isPayloadShape(v: object): boolean {
  const o = v as Record<string, unknown>;
  return typeof o.metadata === 'object' && o.metadata !== null && (o.data === undefined || o.data instanceof Uint8Array);
}

/** Every Payload message in an event, in field order (input, result, headers, memo, ...). */
function payloadsIn(value: unknown, out: Payload[]): void {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return;
  const type = (value as { $type?: { fullName?: string } }).$type?.fullName;
  if (type === '.temporal.api.common.v1.Payload' || (type === undefined && isPayloadShape(value))) {
    out.push(value as Payload);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) payloadsIn(v, out);
    return;
  }
  if (value.constructor?.name === 'Long') return;
  for (const v of Object.values(value)) payloadsIn(v, out);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'vectors': {
      const { positionals } = options(rest, []);
      if (positionals.length !== 1) throw new UsageError('vectors FILE');
      return (await checkVectors(positionals[0])) === 0 ? 0 : 1;
    }
    case 'worker': {
      const { values } = options(rest, ['task-queue'], ['activities-only']);
      const taskQueue = values['task-queue'] as string | undefined;
      if (!taskQueue) throw new UsageError('worker needs --task-queue Q');
      const w = await worker(await codecFromEnv(), taskQueue, Boolean(values['activities-only']));
      // The SDK stops the worker on SIGTERM/SIGINT; run() resolves once it has drained.
      const running = w.run();
      console.log(`worker ready: namespace=${namespace()} task-queue=${taskQueue}`);
      await running;
      return 0;
    }
    case 'run': {
      const { values } = options(rest, ['task-queue', 'workflow-id', 'input']);
      const codec = await codecFromEnv();
      const taskQueue = (values['task-queue'] as string | undefined) ?? `encrypted-${shortId()}`;
      const w = await worker(codec, taskQueue, false);
      const c = await client(codec);
      const result = await w.runUntil(
        c.workflow.execute('EncryptedWorkflow', {
          taskQueue,
          workflowId: (values['workflow-id'] as string | undefined) ?? `encrypted-${shortId()}`,
          args: [(values.input as string | undefined) ?? 'hello, encrypted world'],
        }),
      );
      console.log(result);
      await c.connection.close();
      return 0;
    }
    case 'start': {
      const { values } = options(rest, ['task-queue', 'workflow-id', 'input', 'workflow-type']);
      if (!values['task-queue']) throw new UsageError('start needs --task-queue Q');
      const c = await client(await codecFromEnv());
      const result = await c.workflow.execute((values['workflow-type'] as string | undefined) ?? 'EncryptedWorkflow', {
        taskQueue: values['task-queue'] as string,
        workflowId: (values['workflow-id'] as string | undefined) ?? `encrypted-${shortId()}`,
        args: [(values.input as string | undefined) ?? 'hello, encrypted world'],
      });
      console.log(typeof result === 'string' ? result : JSON.stringify(result));
      await c.connection.close();
      return 0;
    }
    case 'decode-history': {
      const { values } = options(rest, ['workflow-id']);
      if (!values['workflow-id']) throw new UsageError('decode-history needs --workflow-id W');
      const codec = await codecFromEnv();
      const c = await client(codec);
      const history = await c.workflow.getHandle(values['workflow-id'] as string).fetchHistory();
      for (const event of history.events ?? []) {
        const found: Payload[] = [];
        payloadsIn(event, found);
        const decoded = await codec.decode(found);
        for (const p of decoded) {
          console.log(JSON.stringify({ event_id: Number(event.eventId ?? 0), payload: toJson(p) }));
        }
      }
      await c.connection.close();
      return 0;
    }
    default:
      throw new UsageError(command ? `unknown command ${JSON.stringify(command)}` : 'no command');
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof UsageError) {
      console.error(`${e.message}\n${USAGE}`);
      process.exit(2);
    }
    console.error(`error: ${(e as Error).message}`);
    process.exit(1);
  },
);
