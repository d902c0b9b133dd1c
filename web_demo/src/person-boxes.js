// Person boxes for a top-down model on video: the port of kpose/person_boxes.py's pose_boxes
// and of PoseModel.track's frame step without a detector (the page holds one model), tested
// against the Python reference's golden vectors (test/person-boxes.test.mjs). No TF.js here.
//
// A top-down model needs a box per person. The tracker knows where the people it matched on
// the previous frame were, so those boxes crop the next frame (as MoveNet crops its next
// frame); a track not matched on the previous frame gives no box (its last box would crop the
// background or a passer-by), and while nobody was matched the whole frame is the box. A
// track's box holds its person or nobody: its pose is dropped when it scores below
// minPoseScore (the person has gone) or resembles no track (the box is left on the background
// or half a person); new people come from the whole frame. Two crops that converge on one
// person give two poses, and the weaker is dropped.
import { keypointBox } from './tracking.js';

// kpose/person_boxes.py's constants. The golden vectors carry Python's values and the tests
// compare them with these (and Kotlin's), so a change on one side fails until all agree.
// A keypoint box grown by this fraction of its width and height on each side: keypoints lie
// inside the body (head top, hands, feet reach past them) and the person moves between frames.
export const BOX_MARGIN = 0.15;
// A crop box shrinks to at most this fraction of the last one per frame: when a person's lower
// body scores low, the confident keypoints alone would shrink the crop onto the head.
export const KEEP_SIZE = 0.9;
// Poses at least this similar (the tracker's OKS, or box IoU) to a stronger one are duplicates.
export const DUPLICATE_SIMILARITY = 0.7;

/** [[x, y, w, h]] crop boxes for the next frame from poses ({keypoints: [{x, y, score}], box:
 * [x, y, w, h] where each was found}): the box around the keypoints scoring at least threshold,
 * grown by margin of its size per side, and at least keep times the width and height of the
 * pose's own box (same centre). A pose with fewer than two such keypoints, or with all of them
 * at one spot, has no extent and gives no box. */
export function poseBoxes(poses, threshold, margin = BOX_MARGIN, keep = KEEP_SIZE) {
  const boxes = [];
  for (const pose of poses) {
    if (pose.keypoints.filter((k) => k.score >= threshold).length < 2) continue;
    const [x0, y0, x1, y1] = keypointBox(pose.keypoints, threshold);
    if (x1 - x0 <= 0 && y1 - y0 <= 0) continue;
    const w = Math.max((x1 - x0) * (1 + 2 * margin), keep * pose.box[2]);
    const h = Math.max((y1 - y0) * (1 + 2 * margin), keep * pose.box[3]);
    boxes.push([(x0 + x1 - w) / 2, (y0 + y1 - h) / 2, w, h]);
  }
  return boxes;
}

/** One video frame of a top-down model, as PoseModel.track without a detector: the poses to
 * give tracker.update, and the boxes cropped (null: the whole frame). The previous frame is the
 * tracker's last update (tracker.lastUpdateMs; none after a reset). detect(boxes) resolves to
 * the decoded poses of those person boxes (null: of the whole frame, unpadded). */
export async function topDownFrame(tracker, timestampMs, detect) {
  const c = tracker.config;
  // Only the people matched on the previous frame give boxes: a lost track's last box stays
  // where the person was and would crop the background or a passer-by.
  const previous = tracker.lastUpdateMs;
  const expected = previous === null ? [] : tracker.expectedPoses(timestampMs, previous);
  const boxes = poseBoxes(expected, c.keypointThreshold);
  if (!boxes.length) return { boxes: null, poses: await detect(null) };
  // Every box is a track's: a pose there that scores below minPoseScore, or resembles no
  // track, is not a detection (new people come from the whole frame).
  const found = (await detect(boxes)).filter((p) => p.score >= c.minPoseScore && tracker.resemblesAny(p.keypoints, expected));
  return { boxes, poses: tracker.distinct(found, DUPLICATE_SIMILARITY) };
}
