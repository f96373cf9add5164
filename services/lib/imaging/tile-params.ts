/**
 * The tiling parameters' rule that a schema cannot say (pure: denoise's and upscale's manifests
 * check it at submission, before any pixel code is loaded).
 */
import { appError } from '../shared/errors.js';

/** Tile overlap must leave each tile a core of its own: the check denoise and upscale share. */
export function checkTiling(params: { tileSize?: number; tileOverlap: number }): void {
  if (params.tileSize !== undefined && params.tileOverlap * 2 >= params.tileSize) {
    throw appError('invalid_tiling', `tileOverlap (${params.tileOverlap}) must be less than half of tileSize (${params.tileSize})`);
  }
}
