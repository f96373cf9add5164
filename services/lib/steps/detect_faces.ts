/**
 * detect_faces: finds faces and adds them to the job's findings (boxes and scores in the
 * coordinates of the image as the user sees it; with YuNet also five landmarks: right eye, left
 * eye, nose tip, right and left mouth corners). The frame passes through unchanged.
 */
import type { FaceFamily } from '../models/detectors/faces.js';
import type { DetectFacesParamsResolved } from '../shared/schema-types.js';
import type { FindingGeometry, StageDefinition } from '../pipeline/stage.js';

/** Family names in params stand for a concrete manifest model. */
const ALIASES: Record<string, string> = { yunet: 'yunet-640', ultraface: 'ultraface-rfb-320', blazeface: 'blazeface-back-256' };
export const DEFAULT_FACE_MODEL = 'yunet-640';
/** Score scales differ per family: each threshold keeps real faces and drops crowd blur on the fixtures. */
const DEFAULT_MIN_SCORE: Record<FaceFamily, number> = { yunet: 0.6, ultraface: 0.7, blazeface: 0.6 };

export function faceModelId(params: DetectFacesParamsResolved): string {
  return ALIASES[params.model] ?? params.model;
}

/** A face's box and its five landmarks follow the pixels when a later step resizes the frame. */
export const FACE_GEOMETRY: FindingGeometry = { boxes: ['box'], pointLists: ['landmarks'] };

export const stage: StageDefinition<DetectFacesParamsResolved, 'frame'> = {
  step: 'detect_faces',
  version: '1.0.0',
  input: 'frame',
  output: 'frame',
  produces: { faces: FACE_GEOMETRY },
  models: (params) => [[faceModelId(params)]],
  async prepare(options) {
    const { DetectorModels } = await import('../models/detector-cache.js');
    const { detectFaces, faceFamily } = await import('../models/detectors/faces.js');
    const { frameToRgb } = await import('../models/tensor.js');
    const models = new DetectorModels({ modelsDir: options.modelsDir, log: options.log });
    await models.get(DEFAULT_FACE_MODEL);
    return {
      async run({ frame }, params, ctx) {
        const id = faceModelId(params);
        const model = await models.get(id);
        ctx.signal?.throwIfAborted();
        const faces = await detectFaces(model, frameToRgb(frame), {
          minScore: params.minScore ?? DEFAULT_MIN_SCORE[faceFamily(id)],
          maxFaces: params.maxFaces,
          iouThreshold: params.iouThreshold,
          inputSize: params.inputSize,
        });
        return {
          frame,
          findings: { faces },
          provenance: { model: id, modelSha256: model.sha256, provider: model.provider, note: `${faces.length} face(s)` },
        };
      },
      describe() {
        return { defaultModel: DEFAULT_FACE_MODEL, models: models.describe() };
      },
    };
  },
};
