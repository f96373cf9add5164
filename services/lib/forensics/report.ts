/**
 * The report of one job: what was done to the original, step by step, with everything another
 * examiner needs to reproduce it (parameters, model ids and file sha256, execution provider,
 * per-step output sha256, software versions, hosts, times), and a plain disclosure for steps
 * that synthesise detail. Signed by signing.ts; rendered as a printable page by reportHtml.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { packageInfo, repoRoot } from '../shared/package-info.js';
import sharp from 'sharp';
import type { CaseRecord, JobRecord, JobReport, ReportStep } from '../shared/schema-types.js';
import type { SigningKey } from './signing.js';
import { signedBytes } from './signing.js';

/** Steps whose output contains detail a model made up (not in the original's pixels). */
export const SYNTHESISING_STEPS = new Set(['upscale', 'denoise', 'enhance_faces']);

export const DISCLOSURE = 'This result contains model-generated detail: steps marked as synthesising added picture detail '
  + 'that a neural network inferred and that is not present in the original. It is an investigative aid only, '
  + 'not a basis for identification, and must not be presented as a true likeness of the original scene.';

export type ReportContent = Omit<JobReport, 'signature'>;

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

/** Versions of this process's software: the edge reads them once, at start (GIT_COMMIT, else git). */
export function softwareVersions(gitCommit: string): JobReport['software'] {
  const require = createRequire(import.meta.url);
  const root = repoRoot;
  const own = packageInfo();
  let onnx = 'unknown';
  try {
    onnx = (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    // Not resolvable through exports: read it from node_modules.
    try {
      onnx = JSON.parse(readFileSync(path.join(root, 'node_modules/onnxruntime-node/package.json'), 'utf8')).version;
    } catch { /* stays unknown */ }
  }
  let commit = gitCommit;
  if (!commit) {
    try {
      commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString().trim();
    } catch {
      commit = 'unknown';
    }
  }
  const versions = sharp.versions as Record<string, string | undefined>;
  return {
    product: own.name, version: own.version, gitCommit: commit, node: process.version, onnxruntime: onnx,
    sharp: versions.sharp ?? 'unknown', libvips: versions.vips ?? 'unknown',
  };
}


export function buildReport(job: JobRecord, caseRecord: CaseRecord | undefined, software: JobReport['software'], now = Date.now()): ReportContent {
  const provenance = job.result?.provenance ?? [];
  const steps: ReportStep[] = job.pipeline.map((item, index) => {
    const p = provenance.find((x) => x.index === index);
    const progress = job.steps.find((s) => s.index === index);
    const step: ReportStep = {
      index, step: item.step, params: p?.params ?? item.params ?? {}, status: p?.status ?? progress?.status ?? 'pending',
      synthesisesDetail: SYNTHESISING_STEPS.has(item.step) && p?.status !== 'skipped',
    };
    for (const key of ['model', 'modelSha256', 'provider', 'outputSha256', 'note', 'host', 'worker'] as const) if (p?.[key]) step[key] = p[key];
    if (p?.ms !== undefined) step.ms = p.ms;
    if (p?.attempt !== undefined) step.attempt = p.attempt;
    if (p?.digestVersion !== undefined) step.digestVersion = p.digestVersion;
    if (progress?.startedAt) step.startedAt = iso(progress.startedAt);
    if (progress?.finishedAt) step.finishedAt = iso(progress.finishedAt);
    return step;
  });
  const report: ReportContent = {
    reportVersion: 1,
    issuedAt: iso(now)!,
    job: {
      jobId: job.jobId, status: job.status, createdAt: iso(job.createdAt)!,
      owner: { sub: job.owner.sub, ...(job.owner.tenant ? { tenant: job.owner.tenant } : {}) },
      ...(job.caseId ? { caseId: job.caseId } : {}), ...(caseRecord ? { caseName: caseRecord.name } : {}),
      ...(job.replayOf ? { replayOf: job.replayOf } : {}),
      ...(job.startedAt ? { startedAt: iso(job.startedAt) } : {}), ...(job.finishedAt ? { finishedAt: iso(job.finishedAt) } : {}),
    },
    original: {
      sha256: job.input.sha256, bytes: job.input.bytes, ...(job.input.contentType ? { contentType: job.input.contentType } : {}),
      stored: job.input.name.startsWith('evidence/') ? 'evidence' : 'blob',
    },
    steps,
    software,
    disclosures: steps.some((s) => s.synthesisesDetail) ? [DISCLOSURE] : [],
  };
  const image = job.result?.image;
  if (image) report.result = { sha256: image.sha256, bytes: image.bytes, ...(image.contentType ? { contentType: image.contentType } : {}), stored: 'blob' };
  const findings = job.result?.findings;
  if (findings?.faces || findings?.objects) {
    report.findings = { ...(findings.faces ? { faces: findings.faces.length } : {}), ...(findings.objects ? { objects: findings.objects.length } : {}) };
  }
  return report;
}

export async function signReport(content: ReportContent, key: SigningKey): Promise<JobReport> {
  const signature = await key.sign(signedBytes(content as unknown as Record<string, unknown>));
  return { ...content, signature };
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A thumbnail as a data URL (JPEG, at most 360 px wide), or undefined when the bytes are gone. */
export async function thumbnail(bytes: Buffer | undefined): Promise<string | undefined> {
  if (!bytes) return undefined;
  try {
    const jpeg = await sharp(bytes, { failOn: 'none' }).rotate().resize({ width: 360, height: 360, fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 80 }).toBuffer();
    return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
  } catch {
    return undefined;
  }
}

/** The printable page: the same content, the signature, and the two thumbnails side by side. */
export function reportHtml(report: JobReport, thumbs: { original?: string; result?: string }): string {
  const e = (v: unknown) => escapeHtml(v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
  const figure = (title: string, src: string | undefined, sha: string | undefined) => `<figure><figcaption>${title}</figcaption>${src
    ? `<img src="${src}" alt="${title}">` : '<div class="gone">no longer stored</div>'}<code>${e(sha ?? '')}</code></figure>`;
  const rows = report.steps.map((s) => `<tr${s.synthesisesDetail ? ' class="synth"' : ''}><td>${s.index}</td><td>${e(s.step)}${s.synthesisesDetail ? ' <b>(synthesises detail)</b>' : ''}</td>`
    + `<td><code>${e(s.params)}</code></td><td>${e(s.status)}</td><td>${e(s.model ?? '')}<br><code>${e(s.modelSha256 ?? '')}</code></td><td>${e(s.provider ?? '')}</td>`
    + `<td><code>${e(s.outputSha256 ?? '')}</code></td><td>${e(s.startedAt ?? '')}<br>${s.ms !== undefined ? `${Math.round(s.ms)} ms` : ''}</td><td>${e(s.worker ?? s.host ?? '')}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Report of job ${e(report.job.jobId)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#111}h1{font-size:1.4em}table{border-collapse:collapse;width:100%;font-size:.85em}
td,th{border:1px solid #999;padding:4px;vertical-align:top;text-align:left}code{font-size:.8em;word-break:break-all}
.thumbs{display:flex;gap:2em}figure{margin:0;max-width:380px}img{max-width:360px;border:1px solid #999}.gone{width:360px;height:120px;border:1px dashed #999}
.synth td{background:#fff4d6}.disclosure{border:2px solid #b00;padding:1em;margin:1em 0;font-weight:600}
@media print{body{margin:1cm}}
</style></head><body>
<h1>Processing report: job ${e(report.job.jobId)}</h1>
<p>Case: ${report.job.caseId ? `${e(report.job.caseName ?? '')} (<code>${e(report.job.caseId)}</code>)` : 'none'} · status ${e(report.job.status)} ·
created ${e(report.job.createdAt)} · finished ${e(report.job.finishedAt ?? '')} · by ${e(report.job.owner.sub)}${report.job.owner.tenant ? ` (${e(report.job.owner.tenant)})` : ''}
${report.job.replayOf ? ` · replay of <code>${e(report.job.replayOf)}</code>` : ''}</p>
${report.disclosures.map((d) => `<p class="disclosure">${e(d)}</p>`).join('\n')}
<div class="thumbs">${figure('Original', thumbs.original, report.original.sha256)}${figure('Result', thumbs.result, report.result?.sha256)}</div>
<h2>Steps, in order</h2>
<table><tr><th>#</th><th>step</th><th>parameters</th><th>status</th><th>model and file sha256</th><th>provider</th><th>output sha256</th><th>started, time</th><th>worker</th></tr>
${rows}</table>
<h2>Software</h2>
<p>${Object.entries(report.software).map(([k, v]) => `${e(k)} <code>${e(v)}</code>`).join(' · ')}</p>
<h2>Signature</h2>
<p>EdDSA (Ed25519) JWS over the canonical JSON of the report (GET this URL without format=html). Key id <code>${e(report.signature.kid)}</code>,
public keys at <code>/.well-known/jwks.json</code>. Check offline: <code>npm run verify -- report.json result-file</code>.</p>
<p><code>${e(report.signature.protected)}..${e(report.signature.signature)}</code></p>
<p>Issued ${e(report.issuedAt)}.</p>
</body></html>`;
}
