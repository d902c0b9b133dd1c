// Bottom-up decoding as a model's metadata says: its codec's type picks the decoder and
// the output that holds the limb maps (kpose/deploy/graph.py LIMB_OUTPUTS), and the people
// go back to the image as PoseModel.predict maps them.
import { applyAffine, decodePafs, invertAffine, pafParams } from './decoders.js';
import { decodeLimbHeatmaps, limbHeatmapParams } from './limb-heatmap.js';

/** codec.type -> the limb maps output (name, channels per codec limb), its settings with
 * their defaults, params(codec, where) (limbHeatmapParams also checks them, as Python's
 * constructor does), and its decoder, decode(heatmaps, limbMaps, shape, codec) -> people
 * (decodePafs' form). */
export const BOTTOM_UP_CODECS = {
  paf: { output: 'pafs', perLimb: 2, params: pafParams, decode: decodePafs },
  limb_heatmap: { output: 'limb_heatmaps', perLimb: 1, params: limbHeatmapParams, decode: decodeLimbHeatmaps },
};

/** The entry of BOTTOM_UP_CODECS for a bottom-up model's codec (metadata's codec); any other
 * type raises, naming `where`: decoding the maps with another codec's rule would give
 * plausible-looking but wrong people. */
export function bottomUpCodec(codec, where = 'model.json') {
  const type = codec?.type;
  if (typeof type !== 'string' || !Object.hasOwn(BOTTOM_UP_CODECS, type)) {
    throw new Error(`${where}: codec.type is ${JSON.stringify(type)}; this page decodes bottom-up models with ` +
      `codec type ${Object.keys(BOTTOM_UP_CODECS).join(' or ')} (web_demo/src/bottom-up.js): re-export the model ` +
      'with kpose, or port its codec\'s decoder here');
  }
  return BOTTOM_UP_CODECS[type];
}

/** PoseModel.predict for a bottom-up model, after the network: heatmaps [h, w, K] and the
 * codec's limb maps (pafs [h, w, 2L] or limb heatmaps [h, w, L]) of the input made with
 * image->input matrix M (fitMatrix) -> people in the codec's order: [{score, keypoints:
 * [[x, y, score] | [null, null, 0]], box}] in image pixels. As in Python, the input
 * coordinates are rounded to float32 first (what the codec's decode returns); a missing
 * keypoint has no position (Python: 0, 0, 0), and box [x, y, w, h] is the found keypoints'
 * extent (kpose.pose_model.keypoint_extent). */
export function decodeBottomUp(heatmaps, limbMaps, shape, codec, M) {
  const inv = invertAffine(M);
  const { decode } = bottomUpCodec(codec, 'codec');
  return decode(heatmaps, limbMaps, shape, codec).map(({ keypoints, score, peaks }) => {
    const kps = keypoints.map((kp, k) => (peaks[k] < 0 ? [null, null, 0] : applyAffine(inv, kp.map(Math.fround))));
    const found = kps.filter(([x]) => x !== null);
    const xs = found.map(([x]) => x);
    const ys = found.map(([, y]) => y);
    const [x0, y0] = [Math.min(...xs), Math.min(...ys)];
    return { score, keypoints: kps, box: [x0, y0, Math.max(...xs) - x0, Math.max(...ys) - y0] };
  });
}
