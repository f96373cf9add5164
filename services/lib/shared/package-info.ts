/**
 * Where the repository is and what this package says of itself, found once from this file
 * (the same from services/ and from dist/services/): the root holds schemas/ and package.json.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { schemasDir } from './schemas.js';

export const repoRoot = path.dirname(schemasDir);

let info: { name: string; version: string } | undefined;

/** package.json's name and version. */
export function packageInfo(): { name: string; version: string } {
  if (!info) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { name?: string; version?: string };
      info = { name: pkg.name ?? 'photolab-pipeline', version: pkg.version ?? 'unknown' };
    } catch {
      info = { name: 'photolab-pipeline', version: 'unknown' };
    }
  }
  return info;
}
