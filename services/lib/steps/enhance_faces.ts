/**
 * enhance_faces: restores faces with GFPGAN / GPEN / CodeFormer (see face-restore.ts).
 *
 * Faces come from an earlier detect_faces step (findings.faces with landmarks); when there are
 * none (no detect step, or a detector without landmarks) this step runs YuNet itself through
 * detect_faces' decoder. An empty findings.faces from YuNet means "no faces": nothing changes.
 * With `upscale`, the whole frame is first upscaled like the upscale step and the faces are
 * restored at the new size.
 *
 * No restoration model installed: the edge refuses the job (503 model_not_installed, naming the
 * fetch command) unless the stage's FACE_RESTORE_FALLBACK names an installed model; then that
 * model runs on the aligned faces and the provenance note says so.
 */
import type { EnhanceFacesParamsResolved, Face, Findings } from '../shared/schema-types.js';
import type { Frame } from '../pipeline/frame.js';
import type { StageContext, StageDefinition } from '../pipeline/stage.js';
import type { ModelEnv, ModelUse } from '../models/image-models.js';
import { planUpscale } from '../models/super-resolution/plan.js';
import { loadConfig } from '../shared/config.js';
import { DEFAULT_FACE_MODEL, FACE_GEOMETRY } from './detect_faces.js';

/** The detector this step uses when no earlier step found faces with landmarks. */
export const SELF_DETECT_MODEL = DEFAULT_FACE_MODEL;
/** The default restoration model (schemas/steps/enhance_faces.schema.json), loaded at start. */
const DEFAULT_MODEL = 'gfpgan-v1.4';

export interface EnhanceFacesSettings {
  /** FACE_RESTORE_FALLBACK: model id used when the restoration model is missing ('' = refuse). */
  fallback: string;
}

/** `settings` left out: FACE_RESTORE_FALLBACK of the process's configuration. */
export function createEnhanceFacesStage(settings?: EnhanceFacesSettings): StageDefinition<EnhanceFacesParamsResolved, 'frame'> {
  return {
    step: 'enhance_faces',
    version: '1.0.0',
    input: 'frame',
    output: 'frame',
    // Faces it detects itself when no earlier step gave any with landmarks.
    produces: { faces: FACE_GEOMETRY },
    consumes: { faces: 'optional' },
    models: (params) => [[params.model], ...(params.upscale !== undefined ? [[planUpscale(params.upscale).modelId]] : [])],
    async prepare({ log, modelsDir, config = loadConfig() }) {
      const { fallback } = settings ?? { fallback: config.faceRestoreFallback };
      const { detectFaces } = await import('../models/detectors/faces.js');
      const { frameToRgb } = await import('../models/tensor.js');
      const { faceLandmarks, chooseRestorationModel, fallbackRestorer, restorationModelRestorer, restoreFaces, selectFaces } = await import('../models/restorers/face-restore.js');
      const { loadImageModel, modelUse, preloadInstalled, provenanceOf } = await import('../models/image-models.js');
      const { modelsForTask } = await import('../models/manifest.js');
      const { upscaleFrame } = await import('../models/super-resolution/upscaler.js');

      /** Faces to use: the earlier step's when they carry landmarks, else YuNet's on this frame. */
      const facesFor = async (frame: Frame, findings: Findings, minScore: number, env: ModelEnv): Promise<{ faces: Face[]; detected?: ModelUse }> => {
        const earlier = findings.faces;
        if (earlier && (earlier.length === 0 || earlier.some((f) => faceLandmarks(f)))) return { faces: earlier };
        const detector = await loadImageModel(SELF_DETECT_MODEL, env);
        env.signal?.throwIfAborted();
        const faces = await detectFaces(detector, frameToRgb(frame), { minScore, maxFaces: 100, iouThreshold: 0.3, inputSize: 640 });
        return { faces, detected: modelUse(detector) };
      };
      await preloadInstalled([DEFAULT_MODEL, ...(fallback ? [fallback] : []), SELF_DETECT_MODEL], { modelsDir, log });
      return {
        async run({ frame }, params, ctx: StageContext) {
          const env: ModelEnv = { modelsDir, log: ctx.log ?? log, signal: ctx.signal, heartbeat: () => ctx.heartbeat() };
          const weight = params.weight;
          const choice = chooseRestorationModel(params.model, fallback, modelsDir);
          const model = await loadImageModel(choice.id, env);
          const restorer = choice.fallback ? fallbackRestorer(model, weight) : restorationModelRestorer(model, weight);

          const uses: ModelUse[] = [];
          const notes: string[] = [];
          const found = await facesFor(frame, ctx.findings, params.minScore, env);
          if (found.detected) uses.push(found.detected);
          let work = frame;
          let faces = found.faces;
          // Returned findings: self-detected faces, and faces moved to the upscaled size.
          let findings: Findings | undefined = found.detected ? { faces } : undefined;
          if (params.upscale !== undefined) {
            const up = await upscaleFrame(frame, { factor: params.upscale }, env);
            const sx = up.frame.width / frame.width;
            const sy = up.frame.height / frame.height;
            findings = ctx.rescale({ ...ctx.findings, faces }, sx, sy);
            faces = findings.faces ?? [];
            work = up.frame;
            uses.push(...up.models);
            notes.push(up.note);
          }
          const selected = selectFaces(faces, work.width, work.height, {
            onlyCenterFace: params.onlyCenterFace,
            maxFaces: params.maxFaces,
          });
          const result = await restoreFaces(work, selected, restorer, { signal: ctx.signal, heartbeat: env.heartbeat });
          if (result.restored > 0) uses.push(modelUse(model));
          const how = choice.fallback
            ? `fallback ${choice.id} (FACE_RESTORE_FALLBACK; ${params.model} is not installed) on aligned faces, weight ${weight}`
            : `${choice.id}, ${model.inputNames.length > 1 ? 'fidelity' : 'weight'} ${weight}`;
          notes.push(`restored ${result.restored} of ${faces.length} face(s) with ${how}`);
          if (found.detected) notes.push(`faces detected here with ${SELF_DETECT_MODEL}`);
          return { frame: result.frame, ...(findings ? { findings } : {}), provenance: provenanceOf(uses, notes.join('; ')) };
        },
        // With an installed fallback, any restoration model a job names is served (by the fallback).
        servedModels(installed) {
          if (!fallback || !installed.includes(fallback)) return installed;
          return [...new Set([...installed, ...modelsForTask('face_restoration').map((m) => m.id)])];
        },
      };
    },
  };
}

export const stage = createEnhanceFacesStage();
