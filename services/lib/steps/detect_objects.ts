/**
 * detect_objects: finds COCO objects (80 classes) and adds them to the job's findings, boxes in
 * the coordinates of the image as the user sees it. The frame passes through unchanged.
 */
import { COCO_LABELS } from '../models/detectors/coco.js';
import { appError } from '../shared/errors.js';
import type { DetectObjectsParamsResolved } from '../shared/schema-types.js';
import type { StageDefinition } from '../pipeline/stage.js';

const ALIASES: Record<string, string> = { yolox: 'yolox-nano', nanodet: 'nanodet-m' };
export const DEFAULT_OBJECT_MODEL = 'yolox-nano';

export function objectModelId(params: DetectObjectsParamsResolved): string {
  return ALIASES[params.model] ?? params.model;
}

/** Labels -> class ids; unknown labels are a 400 (the schema's enum normally catches them first). */
export function classIdsFor(labels: readonly string[] | undefined): Set<number> | undefined {
  if (!labels || labels.length === 0) return undefined;
  const ids = new Set<number>();
  for (const label of labels) {
    const id = (COCO_LABELS as readonly string[]).indexOf(label);
    if (id < 0) throw appError('invalid_params', `unknown class "${label}"; classes are the 80 COCO labels (person, car, dog, ...)`);
    ids.add(id);
  }
  return ids;
}

export const stage: StageDefinition<DetectObjectsParamsResolved, 'frame'> = {
  step: 'detect_objects',
  version: '1.0.0',
  input: 'frame',
  output: 'frame',
  produces: { objects: { boxes: ['box'] } },
  check: (params) => void classIdsFor(params.classes),
  models: (params) => [[objectModelId(params)]],
  async prepare(options) {
    const { DetectorModels } = await import('../models/detector-cache.js');
    const { detectObjects } = await import('../models/detectors/objects.js');
    const { frameToRgb } = await import('../models/tensor.js');
    const models = new DetectorModels({ modelsDir: options.modelsDir, log: options.log });
    await models.get(DEFAULT_OBJECT_MODEL);
    return {
      async run({ frame }, params, ctx) {
        const id = objectModelId(params);
        const classIds = classIdsFor(params.classes);
        const model = await models.get(id);
        ctx.signal?.throwIfAborted();
        const objects = await detectObjects(model, frameToRgb(frame), {
          minScore: params.minScore,
          maxObjects: params.maxObjects,
          iouThreshold: params.iouThreshold,
          classIds,
        });
        return {
          frame,
          findings: { objects },
          provenance: { model: id, modelSha256: model.sha256, provider: model.provider, note: `${objects.length} object(s)` },
        };
      },
      describe() {
        return { defaultModel: DEFAULT_OBJECT_MODEL, models: models.describe() };
      },
    };
  },
};
