/**
 * What the runner does once a step ran (or was skipped): the one decision of the stage runner,
 * kept pure so that it is unit-tested (test/unit/decide-next.test.ts).
 *   finish   - that was the last step: store the result and end the job;
 *   continue - the next step is hosted by this process and takes the frame in hand: run it here,
 *              the frame in memory (no frame store, no step message, no consumer hop);
 *   publish  - store the output and hand the job to the next step's subject.
 */
import type { StageInputKind, StageOutputKind } from './stage.js';

export type NextMove = 'finish' | 'continue' | 'publish';

export interface NextQuestion {
  index: number;
  length: number;
  /** What the step just done hands on: a frame in memory, or a stored reference. */
  output: StageOutputKind;
  /** Whether a frame is in hand (a skipped step passes on what it had). */
  frameInHand: boolean;
  /** The next step's input kind when this process hosts it, else undefined. */
  nextHostedInput?: StageInputKind;
  /** STAGE_FUSION. */
  fusion: boolean;
}

export function decideNext(q: NextQuestion): NextMove {
  if (q.index >= q.length - 1) return 'finish';
  if (q.fusion && q.frameInHand && q.output === 'frame' && q.nextHostedInput === 'frame') return 'continue';
  return 'publish';
}
