/**
 * Ids of the image models the restore steps use (entries of models/manifest.json). Pure data,
 * so that a step's manifest can name the models it needs without loading any model code.
 */
export const MODEL_IDS = {
  x4: 'realesr-animevideov3-x4',
  x4General: 'realesr-general-x4v3',
  x4Plus: 'realesrgan-x4plus',
  x2Compact: 'sr-nomos-compact-x2',
  x2Span: 'sr-nomos-span-x2',
  x3Y: 'sub-pixel-cnn-x3',
  denoiseColor: 'dncnn-color',
  denoiseGray: 'dncnn-gray',
} as const;
