/**
 * The job's findings as an open map (kind -> what was found), with the two things the runner
 * does to them without knowing any kind: test a step's `when` condition, and move them when a
 * step resizes the frame, by the geometry each kind's producing step declares in its manifest.
 */
import type { Findings, PipelineStep } from '../shared/schema-types.js';
import type { FindingGeometry } from './stage.js';

export type Condition = NonNullable<PipelineStep['when']>;

/** The older string spellings, as the generic conditions they stand for. */
const LEGACY_CONDITIONS: Record<string, { found: string } | { notFound: string }> = {
  faces_found: { found: 'faces' },
  no_faces_found: { notFound: 'faces' },
  objects_found: { found: 'objects' },
};

/** The condition in its generic form; undefined for 'always'. */
export function normalizeCondition(when: PipelineStep['when']): { found: string } | { notFound: string } | undefined {
  if (when === undefined || when === 'always') return undefined;
  if (typeof when === 'string') return LEGACY_CONDITIONS[when];
  return when;
}

/** The finding kind a condition asks about, if any. */
export function conditionKind(when: PipelineStep['when']): string | undefined {
  const c = normalizeCondition(when);
  return c === undefined ? undefined : 'found' in c ? c.found : c.notFound;
}

/** Whether something of `kind` was found: a non-empty list, or any other value present. */
export function found(findings: Readonly<Record<string, unknown>>, kind: string): boolean {
  const value = findings[kind];
  if (Array.isArray(value)) return value.length > 0;
  return value !== undefined && value !== null;
}

export function conditionHolds(when: PipelineStep["when"], findings: Readonly<Record<string, unknown>>): boolean {
  const c = normalizeCondition(when);
  if (c === undefined) return true;
  return 'found' in c ? found(findings, c.found) : !found(findings, c.notFound);
}

/** Text for provenance: "condition {found: faces} did not hold". */
export function describeCondition(when: PipelineStep['when']): string {
  return typeof when === 'string' || when === undefined ? String(when ?? 'always') : JSON.stringify(when);
}

type Box = { x: number; y: number; width: number; height: number };

/**
 * Findings in the coordinates of a frame resized by (sx, sy). Kinds with declared geometry have
 * those fields of each item scaled (an item is an element of a list, or the value itself); kinds
 * without stay as they are. Returns only the kinds it moved (nothing to merge for the others).
 */
export function rescaleFindings(findings: Findings, sx: number, sy: number, geometry: ReadonlyMap<string, FindingGeometry>): Findings {
  const out: Findings = {};
  const box = (b: Box): Box => ({ x: b.x * sx, y: b.y * sy, width: b.width * sx, height: b.height * sy });
  const point = (p: number[]): number[] => [p[0]! * sx, p[1]! * sy, ...p.slice(2)];
  for (const [kind, value] of Object.entries(findings)) {
    const g = geometry.get(kind);
    if (!g || value === undefined || value === null) continue;
    if (!g.boxes?.length && !g.points?.length && !g.pointLists?.length) continue;
    const move = (item: unknown): unknown => {
      if (typeof item !== 'object' || item === null) return item;
      const moved: Record<string, unknown> = { ...(item as Record<string, unknown>) };
      for (const field of g.boxes ?? []) if (moved[field]) moved[field] = box(moved[field] as Box);
      for (const field of g.points ?? []) if (Array.isArray(moved[field])) moved[field] = point(moved[field] as number[]);
      for (const field of g.pointLists ?? []) if (Array.isArray(moved[field])) moved[field] = (moved[field] as number[][]).map(point);
      return moved;
    };
    out[kind] = Array.isArray(value) ? value.map(move) : move(value);
  }
  return out;
}
