"""The embedded synthetic COCO-17 dataset: cartoon people in clutter, made on first use.

Each image holds 1-4 articulated people (3-10 overlapping ones in the crowd
variant). A person is a kinematic skeleton with joint limits, random
proportions, clothing and global orientation (front, side and back views,
in-plane tilt), posed from everyday archetypes plus noise. Bodies are ray-cast
as shaded quadrics and capsules into a z-buffer, so near limbs cover far ones
and a face is only seen from the front: that is what makes left and right
learnable without colour-coding them. Labels (visibility included) come from
the renderer itself.

Modules, in the order the data flows:

* `body`: proportions, poses and the 3D person model;
* `canvas`: the ray-casting renderer (colour, depth, owner label per pixel);
* `scene`: one image: background, placement of people, occluders, camera, labels;
* `dataset`: COCO files, worker processes and the cache (`generate`, `ensure_dataset`);
* `preview`: a contact sheet of annotated images.

Same seed -> same bytes: an image depends only on (seed, split, index).
"""
from kpose.data.synthetic.dataset import (
    DATASET_VERSION, DEFAULT_IMAGE_SIZE, DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, DEFAULT_SEED, ensure_dataset,
    generate,
)
from kpose.data.synthetic.preview import preview
from kpose.data.synthetic.scene import (
    CROWD_SCENE, DEFAULT_SCENE, DISTRACTORS, OCCLUDER_P, PEOPLE_PER_IMAGE_P, PERSON_HEIGHT, TRUNCATION_P,
    YAW_FRONT_SIDE_BACK_P, SceneConfig, render_image,
)

__all__ = ["generate", "ensure_dataset", "preview", "render_image", "DATASET_VERSION",
           "DEFAULT_NUM_TRAIN", "DEFAULT_NUM_VAL", "DEFAULT_SEED", "DEFAULT_IMAGE_SIZE",
           "SceneConfig", "DEFAULT_SCENE", "CROWD_SCENE", "PEOPLE_PER_IMAGE_P", "PERSON_HEIGHT",
           "TRUNCATION_P", "OCCLUDER_P", "DISTRACTORS", "YAW_FRONT_SIDE_BACK_P"]
