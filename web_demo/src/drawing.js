// What the page draws for each pose, before any canvas call: the limbs and keypoints to draw
// and their side (the colour), all from the model's skeleton metadata (names, limbs, flip
// pairs); no keypoint table of its own. No DOM or TF.js in here (test/drawing.test.mjs).
//
// A keypoint's side: for a flip pair, the member whose name says "left" (left_eye, L_Eye,
// LeftHand, left-ear: kpose.data.coco_skeleton's spellings) is left, its mirror right; a
// pair whose names say neither ("lhip"/"rhip") takes kpose's order, left first. A keypoint
// outside the flip pairs is left or right when its name says so, else centre. A limb takes
// the side of its first sided end (the neck-to-left-shoulder limb is left). With the page's
// "names" switch, each drawn keypoint's name (the metadata's skeleton.keypoints) is written
// beside it: a custom skeleton's keypoints are told apart without a legend.

const LEFT = new Set(['left', 'l', 'lft', 'lt']);
const RIGHT = new Set(['right', 'r', 'rgt', 'rt']);

/** A name's lower-case words: camelCase, _, -, spaces and dots split (coco_skeleton._tokens). */
export function nameTokens(name) {
  return String(name).replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase().split(/[_\-\s.]+/).filter(Boolean);
}

/** 'left' | 'right' when exactly one word of the name is a side word, else null. */
export function nameSide(name) {
  const sides = nameTokens(name).filter((t) => LEFT.has(t) || RIGHT.has(t));
  if (sides.length !== 1) return null;
  return LEFT.has(sides[0]) ? 'left' : 'right';
}

/** The side of each keypoint ('left' | 'right' | 'centre') of a skeleton {keypoints, flip_pairs}. */
export function keypointSides(skeleton) {
  const names = skeleton.keypoints;
  const sides = names.map((n) => nameSide(n) ?? 'centre');
  for (const [a, b] of skeleton.flip_pairs ?? []) {
    const swapped = nameSide(names[a]) === 'right' || nameSide(names[b]) === 'left';
    [sides[a], sides[b]] = swapped ? ['right', 'left'] : ['left', 'right'];
  }
  return sides;
}

const PLAN_OPTIONS = ['names'];

/** What to draw of each pose: [{limbs: [[a, b, side]], keypoints: [[k, side]], names: [[k, name]]}],
 * one entry per pose. A keypoint is drawn when it has a position and scores above `threshold`;
 * a limb when both its ends are drawn. sides: keypointSides(skeleton). options.names (default
 * false): each drawn keypoint's name from skeleton.keypoints, to write beside it (else none).
 * An unknown option raises. */
export function drawPlan(poses, skeleton, sides, threshold, options = {}) {
  const unknown = Object.keys(options).filter((k) => !PLAN_OPTIONS.includes(k));
  if (unknown.length) throw new Error(`drawPlan: unknown option ${unknown.join(', ')}; known: ${PLAN_OPTIONS.join(', ')}`);
  const { names = false } = options;
  if (typeof names !== 'boolean') throw new Error(`drawPlan: names must be true or false, got ${JSON.stringify(names)}`);
  const ok = (k) => k !== undefined && k.x !== null && k.score > threshold;
  return poses.map((pose) => {
    const kps = pose.keypoints;
    const limbs = skeleton.limbs
      .filter(([a, b]) => ok(kps[a]) && ok(kps[b]))
      .map(([a, b]) => [a, b, [sides[a], sides[b]].find((s) => s !== 'centre') ?? 'centre']);
    const keypoints = kps.flatMap((k, i) => (ok(k) ? [[i, sides[i]]] : []));
    return { limbs, keypoints, names: names ? keypoints.map(([i]) => [i, String(skeleton.keypoints[i])]) : [] };
  });
}
