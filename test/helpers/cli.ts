/** The `photolab` CLI as a child process (the built dist/services/cli/main.js), as a user runs it. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './paths.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `env` over this process's; `onStderr` sees its error output as it arrives (to know when tap listens). */
export function startCli(args: string[], env: Record<string, string | undefined>, onStderr?: (text: string) => void): { done: Promise<CliRun>; kill(): void } {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/services/cli/main.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
    onStderr?.(stderr);
  });
  const done = new Promise<CliRun>((resolve) => child.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr })));
  return { done, kill: () => child.kill('SIGINT') };
}
