/**
 * Detections in the shapes the PLAYE front end's screens read (src/blueprints/ai.js): the face
 * screen draws a top-level `boxes` array and reads `faces[i].boundingBox` (the browser
 * FaceDetector's shape); the object screen reads `x, y, width, height, label, score` straight
 * from each object. Our own fields stay beside them, so a client of either kind reads one body.
 * Copies are made: the findings of the job record are never changed.
 */
import type { Box, DetectedObject, Face, PlayeFace, PlayeObject } from '../lib/shared/schema-types.js';

export function playeFaces(faces: Face[]): PlayeFace[] {
  return faces.map((face) => ({ ...face, boundingBox: { ...face.box }, ...face.box }));
}

export function playeObjects(objects: DetectedObject[]): PlayeObject[] {
  return objects.map((object) => ({ ...object, ...object.box }));
}

export function boxesOf(items: { box: Box }[]): Box[] {
  return items.map((item) => ({ ...item.box }));
}
