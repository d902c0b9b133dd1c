// Port of kpose/codecs/limb_heatmap.py's decode (LimbHeatmapCodec, SimplePose's limb
// heatmaps: one scalar map per limb instead of a PAF's two channels).
//
// The decode is PafCodec's grouping (decoders.js: pafPeaks, groupPeople) with one change,
// exactly as in Python: a candidate pair's samples along its segment are the limb's map at
// the sample pixels (limbMapSample, paf_grouping.limb_map_samples), not the PAF dotted
// with the unit vector; score = their mean plus the distance prior; a pair is a candidate
// when that score is > 0 and at least min_sample_fraction of the samples exceed
// limb_threshold (PafCodec's paf_threshold). limb_sigma and round_ends only shape the
// training targets (LimbHeatmapCodec.encode): the decoder reads whatever maps it is given.
// test/limb-heatmap.test.mjs checks it against vectors the Python codec writes.
import { bottomUpParams, groupPeople, pafPeaks } from './decoders.js';

/** LimbHeatmapCodec's fields and defaults (input_size, heatmap_size and limbs have none). */
export const LIMB_HEATMAP_DEFAULTS = {
  limb_sigma: 1.0, round_ends: true, sigma: 2.0, dark_radius: null, peak_threshold: 0.1, smooth_sigma: 0.0,
  upsample: 1, num_samples: 10, limb_threshold: 0.1, min_sample_fraction: 0.8, max_limb_fraction: 0.5,
  min_keypoints: 3,
};

/** LimbHeatmapCodec.from_dict: a limb heatmap codec dict -> every decode parameter
 * (bottomUpParams: defaults filled in, checked as the Python constructor checks them; an
 * unknown key raises). `where` names the codec's place in errors. */
export function limbHeatmapParams(codec, where = 'codec') {
  return bottomUpParams(codec, 'limb_heatmap', LIMB_HEATMAP_DEFAULTS, 'kpose.codecs.limb_heatmap.LimbHeatmapCodec',
    where, (p, fail) => {
      if (!(p.limb_sigma > 0)) fail('limb_sigma', `must be > 0 (heatmap pixels), got ${p.limb_sigma}`);
    });
}

/** limb_map_samples: the limb's own map at one sample pixel (maps [h, w, L], at: the
 * pixel's first channel); the unit vector is unused: a scalar map has no direction. */
export function limbMapSample(maps, at, limb) {
  return maps[at + limb];
}

/** LimbHeatmapCodec.decode: heatmaps [h, w, K] and limb maps [h, w, L] (channels-last
 * Float32Arrays; L = codec.limbs.length, redundant limbs included) -> people sorted by
 * descending score, as decodePafs returns them:
 * [{keypoints: [[x, y, score], ...] (missing: [0, 0, 0]), score, peaks: [peak id or -1]}].
 * codec: LimbHeatmapCodec.to_dict() (the metadata's codec). */
export function decodeLimbHeatmaps(heatmaps, limbMaps, shape, codec) {
  const params = limbHeatmapParams(codec);
  const [h, w, K] = shape;
  const L = params.limbs.length;
  const [ch, cw] = params.heatmap_size;
  if (h !== ch || w !== cw || heatmaps.length !== h * w * K || limbMaps.length !== h * w * L) {
    throw new Error(`expected heatmaps ${ch}x${cw}xK and limb maps ${ch}x${cw}x${L} (heatmap_size, limbs), ` +
      `got shape ${shape} with ${heatmaps.length} and ${limbMaps.length} values`);
  }
  if (params.limbs.some(([a, b]) => Math.max(a, b) >= K)) {
    throw new Error(`limbs use keypoints beyond the ${K} heatmap channels; pass the skeleton's limbs for this model`);
  }
  // LimbHeatmapCodec.grouping: PafCodec's settings, limb_threshold as its paf_threshold.
  const grouping = { ...params, paf_threshold: params.limb_threshold };
  return groupPeople(pafPeaks(heatmaps, shape, grouping), limbMaps, [h, w, L], K, grouping, limbMapSample);
}
