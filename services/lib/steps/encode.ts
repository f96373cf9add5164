/**
 * encode: a raw frame -> JPEG, PNG, WebP or AVIF. By default the format the job's input came in
 * (formats we do not write, GIF and TIFF, come out as lossless PNG).
 */
import type { EncodeParams, EncodeParamsResolved } from '../shared/schema-types.js';
import type { StageDefinition } from '../pipeline/stage.js';

type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif';
const CONTENT_TYPES: Record<OutputFormat, string> = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', avif: 'image/avif' };

export function outputFormatFor(requested: EncodeParams['format'], inputFormat: string | undefined): OutputFormat {
  if (requested && requested !== 'input') return requested;
  if (inputFormat === 'jpeg' || inputFormat === 'png' || inputFormat === 'webp' || inputFormat === 'avif') return inputFormat;
  if (inputFormat === 'heif') return 'avif';
  return 'png';
}

export const stage: StageDefinition<EncodeParamsResolved, 'frame'> = {
  step: 'encode',
  version: '1.0.0',
  input: 'frame',
  output: 'encoded',
  async prepare() {
    const sharp = (await import('sharp')).default;
    return {
      async run({ frame }, params, ctx) {
        const format = outputFormatFor(params.format, ctx.findings.image?.format ?? ctx.inputFormat);
        let image = sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: frame.channels } });
        const hasAlpha = frame.channels === 2 || frame.channels === 4;
        // Without this sharp writes a grey frame out as sRGB: three equal channels, a larger file.
        if (frame.channels <= 2) image = image.toColourspace('b-w');
        switch (format) {
          case 'jpeg':
            // JPEG has no alpha: composite on white rather than let transparent pixels turn black.
            if (hasAlpha) image = image.flatten({ background: '#ffffff' });
            image = image.jpeg({ quality: params.quality ?? 90, mozjpeg: false, chromaSubsampling: (params.quality ?? 90) >= 90 ? '4:4:4' : '4:2:0' });
            break;
          case 'png':
            image = image.png({ compressionLevel: params.compressionLevel ?? 6 });
            break;
          case 'webp':
            image = image.webp({ quality: params.quality ?? 90, lossless: params.lossless ?? false });
            break;
          case 'avif':
            image = image.avif({ quality: params.quality ?? 60, lossless: params.lossless ?? false });
            break;
        }
        const bytes = await image.toBuffer();
        return { encoded: { bytes, format, contentType: CONTENT_TYPES[format] }, provenance: { note: `encoded as ${format}` } };
      },
    };
  },
};
