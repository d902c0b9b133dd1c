// drawing.js: what the page draws comes from the skeleton metadata alone: any keypoint names,
// limbs and flip pairs (kpose's built-in tables and skeletons read from COCO-format files);
// sides from the names' left/right words in their common spellings; keypoint names written
// beside the drawn keypoints when the page's "names" switch is on.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { drawPlan, keypointSides, nameSide, nameTokens } from '../src/drawing.js';

test('left/right words in their common spellings', () => {
  assert.deepEqual(nameTokens('L_F_Paw'), ['l', 'f', 'paw']);
  assert.deepEqual(nameTokens('LeftHand'), ['left', 'hand']);
  assert.deepEqual(nameTokens('right ear.tip'), ['right', 'ear', 'tip']);
  const sides = {
    left_eye: 'left', right_eye: 'right', L_Eye: 'left', R_EarBase: 'right', LeftHand: 'left', 'right-ear': 'right',
    left_front_paw: 'left', Lt_knee: 'left', nose: null, root_of_tail: null, lhip: null, left_right: null, lip: null,
  };
  for (const [name, side] of Object.entries(sides)) assert.equal(nameSide(name), side, name);
});

test('sides from flip pairs and names, in either pair order', () => {
  // MPII lists (right, left) pairs; kpose's inferred pairs are (left, right); lhip/rhip say neither.
  const skeleton = {
    keypoints: ['right_ankle', 'left_ankle', 'neck', 'lhip', 'rhip', 'L_Eye', 'R_Eye', 'left_wing'],
    flip_pairs: [[0, 1], [3, 4], [6, 5]],
  };
  assert.deepEqual(keypointSides(skeleton), ['right', 'left', 'centre', 'left', 'right', 'left', 'right', 'left']);
  assert.deepEqual(keypointSides({ keypoints: ['base', 'joint1', 'gripper'], flip_pairs: [] }),
    ['centre', 'centre', 'centre']);
});

test('the plan draws the skeleton\'s own limbs between keypoints above the threshold', () => {
  const skeleton = {
    keypoints: ['L_Eye', 'R_Eye', 'Nose', 'TailBase', 'Withers'],
    limbs: [[0, 1], [0, 2], [1, 2], [2, 4], [4, 3]],
    flip_pairs: [[0, 1]],
  };
  const sides = keypointSides(skeleton);
  const kp = (score, x = 1) => ({ x, y: 1, score, name: '' });
  const poses = [
    { keypoints: [kp(0.9), kp(0.9), kp(0.5), kp(0.1), kp(0.3)] },
    { keypoints: [kp(0.9), kp(0, null), kp(0.9), kp(0.9), kp(0.9)] }, // bottom-up: a keypoint not found
  ];
  const [first, second] = drawPlan(poses, skeleton, sides, 0.2);
  assert.deepEqual(first.limbs, [[0, 1, 'left'], [0, 2, 'left'], [1, 2, 'right'], [2, 4, 'centre']]);
  assert.deepEqual(first.names, []); // names are off by default
  assert.deepEqual(first.keypoints, [[0, 'left'], [1, 'right'], [2, 'centre'], [4, 'centre']]);
  assert.deepEqual(second.limbs.map(([a, b]) => [a, b]), [[0, 2], [2, 4], [4, 3]]);
  assert.deepEqual(second.keypoints.map(([k]) => k), [0, 2, 3, 4]);
  // Threshold 0 (bottom-up): every found keypoint, none of the missing.
  assert.deepEqual(drawPlan(poses, skeleton, sides, 0)[1].keypoints.map(([k]) => k), [0, 2, 3, 4]);
  assert.deepEqual(drawPlan([], skeleton, sides, 0.2), []);
});

test('names: each drawn keypoint\'s name from the skeleton metadata, nothing for the others', () => {
  const skeleton = {
    keypoints: ['L_F_Paw', 'R_F_Paw', 'Nose', 'root_of_tail'], limbs: [[0, 2], [1, 2], [2, 3]], flip_pairs: [[0, 1]],
  };
  const sides = keypointSides(skeleton);
  // The pose's own `name` fields are ignored: the metadata's names are the ones drawn.
  const kp = (score, x = 1) => ({ x, y: 1, score, name: 'not this' });
  const poses = [{ keypoints: [kp(0.9), kp(0.1), kp(0.5), kp(0.3)] }, { keypoints: [kp(0, null), kp(0.8), kp(0.8), kp(0)] }];
  const plan = drawPlan(poses, skeleton, sides, 0.2, { names: true });
  assert.deepEqual(plan.map((p) => p.names), [
    [[0, 'L_F_Paw'], [2, 'Nose'], [3, 'root_of_tail']],
    [[1, 'R_F_Paw'], [2, 'Nose']],
  ]);
  // Names do not change what else is drawn.
  const plain = drawPlan(poses, skeleton, sides, 0.2, { names: false });
  assert.deepEqual(plan.map(({ limbs, keypoints }) => ({ limbs, keypoints })),
    plain.map(({ limbs, keypoints }) => ({ limbs, keypoints })));
  assert.ok(plain.every((p) => p.names.length === 0));
  assert.throws(() => drawPlan(poses, skeleton, sides, 0.2, { labels: true }), /unknown option labels; known: names/);
  assert.throws(() => drawPlan(poses, skeleton, sides, 0.2, { names: 1 }), /names must be true or false/);
});
