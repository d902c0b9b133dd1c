// Run an exported kpose TF.js graph model in node on raw float32 crops.
// Used by kpose's parity report (kpose.deploy.tfjs.TfjsRunner):
//   node tools/infer.mjs MODEL_DIR INPUT.bin B,H,W,3 OUT.json
// writes OUT.json = {name: {shape, file}} and one little-endian float32 OUT.<name>.bin per output.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

const [modelDir, inputPath, shapeText, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node tools/infer.mjs MODEL_DIR INPUT.bin B,H,W,3 OUT.json');
  process.exit(2);
}

// tfjs in node has no file:// loader without tfjs-node; hand it the artifacts in memory.
function loadArtifacts(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  return {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    weightSpecs: specs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
  };
}

// The WASM backend (XNNPACK), as the demo page runs it without a GPU: an order of magnitude
// faster than tfjs's pure-JS 'cpu' backend, outputs within 1e-5 of it (docs/results.md).
// KPOSE_TFJS_BACKEND=cpu runs the reference kernels instead.
setWasmPaths(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '@tensorflow',
                       'tfjs-backend-wasm', 'dist') + path.sep);
const backend = process.env.KPOSE_TFJS_BACKEND || 'wasm';
if (!(await tf.setBackend(backend))) {
  console.error(`infer.mjs: TF.js backend ${backend} did not start`);
  process.exit(1);
}
const model = await tf.loadGraphModel(tf.io.fromMemory(loadArtifacts(modelDir)));
const shape = shapeText.split(',').map(Number);
const raw = fs.readFileSync(inputPath);
const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const per = shape.slice(1).reduce((a, b) => a * b, 1);
// The converter keeps the signature's output names (use_structured_outputs_names) in
// structuredOutputKeys, in the order of model.outputs; node names are like Identity:0.
const artifacts = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
const keys = artifacts.userDefinedMetadata?.structuredOutputKeys;
const names = keys && keys.length === model.outputs.length ? keys : model.outputs.map((o) => o.name);
const collected = Object.fromEntries(names.map((n) => [n, []]));
let outShapes = {};
for (let i = 0; i < shape[0]; i++) {
  const x = tf.tensor(data.subarray(i * per, (i + 1) * per), [1, ...shape.slice(1)], 'float32');
  let out = model.execute({ [model.inputs[0].name]: x });
  if (!Array.isArray(out)) out = [out];
  for (let j = 0; j < names.length; j++) {
    collected[names[j]].push(await out[j].data());
    outShapes[names[j]] = out[j].shape.slice(1);
    out[j].dispose();
  }
  x.dispose();
}
const result = {};
for (const n of names) {
  const file = `${outPath}.${n.replace(/[^A-Za-z0-9_]/g, '_')}.bin`;
  const total = collected[n].reduce((a, b) => a + b.length, 0);
  const buf = new Float32Array(total);
  let off = 0;
  for (const c of collected[n]) { buf.set(c, off); off += c.length; }
  fs.writeFileSync(file, Buffer.from(buf.buffer));
  result[n] = { shape: [shape[0], ...outShapes[n]], file };
}
fs.writeFileSync(outPath, JSON.stringify(result));
