"""Synthetic video clips: the synthetic people walking, crossing, covering each other, leaving
and coming back, with ground-truth keypoints and identities per frame (PoseTrack-like COCO).

    from kpose.data.synthetic.clips import generate_clips, read_clips
    ann = generate_clips("clips/", n=8, seed=0)       # frames/clip_000/000000.jpg ... + JSON
    for clip in read_clips(ann):
        for image, gt in clip:                          # gt.track_ids, gt.keypoints, gt.boxes
            ...

Modules, in the order the data flows: `motion` (who walks where, gait), `render` (one
background per clip, people per frame), `files` (writing and reading the clip files).

A subpackage rather than modules beside `scene`: the still-image dataset's cache key hashes
the .py files of kpose/data/synthetic itself, and clips do not change those images.
"""
from kpose.data.synthetic.clips.files import (
    ANNOTATIONS, CLIPS_VERSION, DEFAULT_DURATION_S, DEFAULT_FPS, DEFAULT_FRAME_SIZE, DEFAULT_NUM_CLIPS, Clip,
    FrameGT, generate_clip, generate_clips, read_clips,
)
from kpose.data.synthetic.clips.motion import KINDS, RETURN_GAP_S

__all__ = ["generate_clip", "generate_clips", "read_clips", "Clip", "FrameGT", "ANNOTATIONS", "CLIPS_VERSION",
           "DEFAULT_NUM_CLIPS", "DEFAULT_FPS", "DEFAULT_DURATION_S", "DEFAULT_FRAME_SIZE", "KINDS", "RETURN_GAP_S"]
