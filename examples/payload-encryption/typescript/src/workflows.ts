// Workflow code: runs in the SDK's deterministic sandbox (bundled by the worker). It imports only
// @temporalio/workflow and activity types; the codec stays outside the sandbox.
import { proxyActivities } from '@temporalio/workflow';
import type * as activities from './activities';

const { Greet } = proxyActivities<typeof activities>({ startToCloseTimeout: '30 seconds' });

/** `EncryptedWorkflow(input)` returns `"processed: " + input` (via the activity `Greet`). */
export async function EncryptedWorkflow(input: string): Promise<string> {
  return await Greet(input);
}
