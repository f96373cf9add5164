/**
 * The tests' one way to wait: poll `check` until it gives a truthy value (returned), or fail
 * after `timeoutMs` naming `what`, the last error `check` threw, or what `describe` says then.
 * Tests wait for state (a stored event, a consumer with nothing pending), never for a fixed time.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  what: string,
  timeoutMs = 20_000,
  describe?: () => Promise<string> | string,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as T;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > until) {
      const detail = describe ? await describe() : lastError ? String(lastError) : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `: ${detail}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
