// Activities shared by name with the other language examples (examples/payload-encryption/README.md).

export async function Greet(input: string): Promise<string> {
  return `processed: ${input}`;
}

/** Called by the Go `CrossLanguageWorkflow` on task queue `codec-cross-typescript`. */
export async function TypeScriptActivity(s: string): Promise<string> {
  return `${s} | typescript`;
}
