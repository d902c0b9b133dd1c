// Loads the golden vectors written by tools/write_golden.py (Python reference codecs).
import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';

const DIR = new URL('./golden/', import.meta.url);

export function loadGolden(name) {
  return JSON.parse(readFileSync(new URL(`${name}.json`, DIR), 'utf8'));
}

/** {dtype: "float32", shape, zlib_b64} -> Float32Array (little-endian). */
export function decodeArray({ dtype, shape, zlib_b64: data }) {
  if (dtype !== 'float32') throw new Error(`unsupported dtype ${dtype}`);
  const bytes = inflateSync(Buffer.from(data, 'base64'));
  const out = new Float32Array(bytes.length / 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  if (out.length !== shape.reduce((a, b) => a * b, 1)) throw new Error('array size does not match its shape');
  return out;
}

/** Tracks the largest |a - b| seen under a label, for the test's report. */
export class MaxDiff {
  constructor() { this.max = new Map(); }
  add(label, a, b) {
    const d = Math.abs(a - b);
    if (!(d <= (this.max.get(label) ?? -1))) this.max.set(label, Number.isNaN(d) ? Infinity : d);
    return d;
  }
  report() {
    return [...this.max].map(([k, v]) => `${k}: ${v.toExponential(2)}`).join(', ');
  }
}
