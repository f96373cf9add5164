#!/usr/bin/env node
// Makes the prebuilt uWebSockets.js binary load on glibc < 2.38 (Debian bookworm has 2.36).
//
// Upstream's linux-x64 binaries call three C23 functions that only exist from glibc 2.38 on.
// When loading fails for that reason we build a tiny shim library that provides them,
// drop the GLIBC_2.38 version requirement from those three symbols and make the binary
// load the shim from its own folder. On a machine where the binary already loads
// (glibc >= 2.38, macOS) this script does nothing.
//
// patchelf 0.14 corrupts the search path when --add-needed and --set-rpath are given
// in one call, so every patchelf edit below is its own call.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const C23_SYMBOLS = ['__isoc23_sscanf', '__isoc23_strtol', '__isoc23_strtoul'];
const SHIM_NAME = 'libuws_glibc_shim.so';

function tryLoad() {
  const probe = spawnSync(process.execPath, ['-e', "require('uWebSockets.js')"], { encoding: 'utf8' });
  return { ok: probe.status === 0, error: `${probe.stderr}` };
}

function have(tool) {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

let uwsDir;
try {
  uwsDir = path.dirname(require.resolve('uWebSockets.js'));
} catch {
  console.log('[fix-uws-glibc] uWebSockets.js is not installed; nothing to do');
  process.exit(0);
}
if (process.platform !== 'linux') process.exit(0);

const first = tryLoad();
if (first.ok) {
  console.log('[fix-uws-glibc] uWebSockets.js loads on this machine; nothing to do');
  process.exit(0);
}
if (!/__isoc23_|GLIBC_2\.3[89]/.test(first.error)) {
  console.error(`[fix-uws-glibc] uWebSockets.js fails to load for a reason this script does not fix:\n${first.error}`);
  process.exit(1);
}
for (const tool of ['cc', 'patchelf']) {
  if (!have(tool)) {
    console.error(`[fix-uws-glibc] uWebSockets.js needs glibc 2.38; to shim it this machine needs '${tool}'.\n` +
      `Install it (Debian: apt-get install -y gcc patchelf) and run 'npm rebuild uWebSockets.js' or 'node scripts/fix-uws-glibc.mjs'.`);
    process.exit(1);
  }
}

/**
 * patchelf clears the symbols' version but leaves the binary's "needs GLIBC_2.38" entry,
 * which the loader still refuses. Marking that entry VER_FLG_WEAK makes a missing version
 * non-fatal (glibc dl-version.c), and no symbol refers to it any more.
 */
function markGlibcVersionWeak(file, versionName) {
  const elf = readFileSync(file);
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new Error(`${file}: not a 64-bit little-endian ELF`);
  const sectionTableOffset = Number(elf.readBigUInt64LE(0x28));
  const sectionHeaderSize = elf.readUInt16LE(0x3a);
  const sectionCount = elf.readUInt16LE(0x3c);
  const section = (i) => {
    const at = sectionTableOffset + i * sectionHeaderSize;
    return { type: elf.readUInt32LE(at + 4), offset: Number(elf.readBigUInt64LE(at + 24)), link: elf.readUInt32LE(at + 40), info: elf.readUInt32LE(at + 44) };
  };
  const VER_FLG_WEAK = 0x2;
  const SHT_GNU_VERNEED = 0x6ffffffe;
  let changed = 0;
  for (let i = 0; i < sectionCount; i++) {
    const verneed = section(i);
    if (verneed.type !== SHT_GNU_VERNEED) continue;
    const strings = section(verneed.link).offset;
    const nameAt = (offset) => elf.toString('latin1', strings + offset, elf.indexOf(0, strings + offset));
    let need = verneed.offset;
    for (let n = 0; n < verneed.info; n++) {
      const auxCount = elf.readUInt16LE(need + 2);
      let aux = need + elf.readUInt32LE(need + 8);
      for (let a = 0; a < auxCount; a++) {
        if (nameAt(elf.readUInt32LE(aux + 8)) === versionName) {
          elf.writeUInt16LE(elf.readUInt16LE(aux + 4) | VER_FLG_WEAK, aux + 4);
          changed++;
        }
        aux += elf.readUInt32LE(aux + 12);
      }
      need += elf.readUInt32LE(need + 12);
    }
  }
  if (changed > 0) writeFileSync(file, elf);
}

const shimPath = path.join(uwsDir, SHIM_NAME);
execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', shimPath, path.join(here, 'uws-glibc-shim', 'shim.c')]);

const arch = process.arch === 'x64' ? 'x64' : process.arch;
const binaries = readdirSync(uwsDir).filter((f) => f.startsWith(`uws_linux_${arch}_`) && f.endsWith('.node'));
for (const name of binaries) {
  const file = path.join(uwsDir, name);
  const original = `${file}.orig`;
  // Always patch from the pristine copy so that running this twice is harmless.
  if (!existsSync(original)) copyFileSync(file, original);
  copyFileSync(original, file);
  const undefinedSymbols = execFileSync('sh', ['-c', `nm -D --undefined-only '${file}' || true`], { encoding: 'utf8' });
  const used = C23_SYMBOLS.filter((s) => undefinedSymbols.includes(s));
  if (used.length === 0) continue;
  for (const symbol of used) execFileSync('patchelf', ['--clear-symbol-version', symbol, file]);
  execFileSync('patchelf', ['--add-needed', SHIM_NAME, file]);
  execFileSync('patchelf', ['--set-rpath', '$ORIGIN', file]);
  markGlibcVersionWeak(file, 'GLIBC_2.38');
}

const second = tryLoad();
if (!second.ok) {
  console.error(`[fix-uws-glibc] shim applied but uWebSockets.js still fails to load:\n${second.error}`);
  process.exit(1);
}
console.log(`[fix-uws-glibc] uWebSockets.js patched to load on this glibc (${binaries.length} binaries checked)`);
