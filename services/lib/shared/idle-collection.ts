/**
 * A young-generation collection when a process falls idle, so that the next job reuses the
 * memory of the last one instead of faulting in new pages.
 *
 * Why: a job's big buffers (the upload, a 3 MB frame, the encoded result, the tensors) live
 * outside V8's heap, and V8 frees them only at a collection of the objects that hold them. One
 * job at a time allocates too little on V8's heap to start one, so every job took fresh pages
 * from the kernel, and a fresh page costs about 10 us to fault in on this machine: 250-340 page
 * faults, 2-4 ms, per 1 MP job in each stage process (BENCHMARKS.md). Collected when idle, the
 * buffers go back to malloc and the next job gets the same, already mapped, pages.
 *
 * Only when nothing has been in progress for IDLE_GC_MS: a busy process never pays for it (V8's
 * own collections run as before). A young collection of an empty young generation took 0.07 ms here.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

export type Collect = (options: { type: 'minor' }) => void;

let collect: Collect | undefined;
let idleAfterMs = 0;
let inProgress = 0;
let timer: NodeJS.Timeout | undefined;

/** V8's collector: the flag exposes `gc` to the contexts made after it is set (the only handle on it). */
export function v8Collector(): Collect {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as Collect;
}

/** Turns the collection on for this process (0: off). Call once, at start; `using` is for tests. */
export function startIdleCollection(afterMs: number, using?: Collect): void {
  if (afterMs <= 0 || collect) return;
  collect = using ?? v8Collector();
  idleAfterMs = afterMs;
}

/** Turns it off again (tests). */
export function stopIdleCollection(): void {
  collect = undefined;
  clearTimeout(timer);
  timer = undefined;
}

/** A piece of work begins (a message, a request); the returned function ends it (once). */
export function workBegins(): () => void {
  inProgress++;
  if (timer) {
    clearTimeout(timer);
    timer = undefined;
  }
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    inProgress--;
    if (collect && inProgress === 0 && !timer) {
      timer = setTimeout(collectIfIdle, idleAfterMs);
      timer.unref();
    }
  };
}

function collectIfIdle(): void {
  timer = undefined;
  if (inProgress === 0) collect?.({ type: 'minor' });
}

/** Work in progress now (for tests). */
export function workInProgress(): number {
  return inProgress;
}
