"""Skeletons read from COCO-format files (`skeleton: from-data`): names, limbs, flip pairs and
sigmas of real animal and CrowdPose files, every messy case of a real file, and a model
trained, saved, exported and loaded back with a skeleton no built-in table knows."""
import json

import numpy as np
import pytest

import kpose
from kpose.data.coco import read_coco
from kpose.data.coco_images import read_coco_images
from kpose.data.coco_skeleton import (DEFAULT_SIGMA, SkeletonRequest, disconnected_keypoints, infer_flip_pairs,
                                      pick_categories, require_connected, skeleton_from_categories,
                                      skeleton_request)
from kpose.data.images import DataError
from kpose.skeletons import CROWDPOSE14, Skeleton


def _names(names, pairs):
    return sorted((names[a], names[b]) for a, b in pairs)


@pytest.mark.parametrize("names, expected", [
    (["left_eye", "right_eye", "nose"], [("left_eye", "right_eye")]),
    (["L_Eye", "R_Eye", "L_F_Paw", "R_F_Paw", "Nose"], [("L_Eye", "R_Eye"), ("L_F_Paw", "R_F_Paw")]),
    (["LeftHand", "RightHand", "Head"], [("LeftHand", "RightHand")]),
    (["lhip", "rhip", "neck", "lip"], [("lhip", "rhip")]),
    (["left_front_paw", "right_front_paw", "left_back_paw", "right_back_paw"],
     [("left_back_paw", "right_back_paw"), ("left_front_paw", "right_front_paw")]),
    (["left-ear", "right ear", "tail"], [("left-ear", "right ear")]),
    (["base", "joint1", "joint2", "gripper"], []),          # a robot arm: nothing to mirror
])
def test_flip_pairs_from_left_right_names(names, expected):
    assert _names(names, infer_flip_pairs(names)) == expected


def test_a_side_without_its_mirror_is_an_error():
    with pytest.raises(ValueError, match=r"left_wing.*flip_pairs"):
        infer_flip_pairs(["left_wing", "beak"])


def _category(**kw):
    return {"id": 1, "name": "thing", "keypoints": ["a", "left_b", "right_b", "c"], **kw}


def test_limbs_one_based_zero_based_names_missing_and_bad(tmp_path):
    path = "f.json"
    sk, notes = skeleton_from_categories(path, [_category(skeleton=[[1, 2], [1, 3], [4, 1]])], SkeletonRequest(), "t")
    assert sk.limbs == ((0, 1), (0, 2), (3, 0)) and not any("0-based" in n for n in notes)
    sk, notes = skeleton_from_categories(path, [_category(skeleton=[[0, 1], [0, 2], [3, 0]])], SkeletonRequest(), "t")
    assert sk.limbs == ((0, 1), (0, 2), (3, 0)) and any("0-based" in n for n in notes)
    sk, _ = skeleton_from_categories(path, [_category(skeleton=[["a", "left_b"], ["a", "a"], ["left_b", "a"]])],
                                     SkeletonRequest(), "t")
    assert sk.limbs == ((0, 1),)  # self-joining and repeated limbs dropped
    sk, notes = skeleton_from_categories(path, [_category()], SkeletonRequest(), "t")
    assert sk.limbs == () and any("no limbs" in n for n in notes)
    with pytest.raises(DataError, match=r"f.json: field categories\[\].skeleton names keypoints \[7\].*Fix"):
        skeleton_from_categories(path, [_category(skeleton=[[1, 7]])], SkeletonRequest(), "t")
    with pytest.raises(DataError, match="keypoint 'z' is not one of"):
        skeleton_from_categories(path, [_category(skeleton=[["a", "z"]])], SkeletonRequest(), "t")
    # Sigmas: a stated default, said in a note; the recipe's when given.
    sk, notes = skeleton_from_categories(path, [_category()], SkeletonRequest(), "t")
    assert sk.sigmas == (DEFAULT_SIGMA,) * 4 and any(str(DEFAULT_SIGMA) in n for n in notes)
    req = skeleton_request({"from": "data", "sigmas": [0.1, 0.2, 0.2, 0.3], "limbs": [["a", "c"]],
                            "flip_pairs": [["left_b", "right_b"]]})
    sk, _ = skeleton_from_categories(path, [_category()], req, "t")
    assert sk.sigmas == (0.1, 0.2, 0.2, 0.3) and sk.limbs == ((0, 3),) and sk.flip_pairs == ((1, 2),)
    with pytest.raises(ValueError, match="unknown keys"):
        skeleton_request({"from": "data", "flips": []})


def test_categories_picked_merged_or_listed():
    cats = [_category(id=1, name="dog"), _category(id=2, name="cat")]
    assert [c["name"] for c in pick_categories("f.json", cats, SkeletonRequest())] == ["dog", "cat"]
    assert [c["name"] for c in pick_categories("f.json", cats, SkeletonRequest(category="cat"))] == ["cat"]
    cats[1]["keypoints"] = ["x", "y"]
    with pytest.raises(DataError, match=r"different keypoints.*dog.*cat.*category: NAME"):
        pick_categories("f.json", cats, SkeletonRequest())


def test_bottom_up_needs_connected_limbs():
    sk = Skeleton("t", ("a", "b", "c", "d"), (), ((0, 1), (2, 3)))
    assert disconnected_keypoints(sk) == [["c", "d"]]
    with pytest.raises(ValueError, match=r"\['c', 'd'\].*add limbs"):
        require_connected(sk)
    require_connected(CROWDPOSE14)


# --- the real files ---------------------------------------------------------------------

def test_real_animal_and_crowdpose_files(shared):
    data = shared / "data"
    ap10k = read_coco(data / "ap10k_samples" / "test_ap10k.json", data / "ap10k_samples", skeleton="from-data",
                      progress=False)
    sk = ap10k.skeleton
    assert sk.keypoints[:5] == ("left_eye", "right_eye", "nose", "neck", "root_of_tail") and len(sk.limbs) == 17
    assert ("left_front_paw", "right_front_paw") in _names(sk.keypoints, sk.flip_pairs)
    assert len(sk.flip_pairs) == 7 and not disconnected_keypoints(sk)
    # 54 species categories read as one; the evaluation copy carries them as category 1.
    gt = json.loads(open(ap10k.ann_file).read())
    assert [c["id"] for c in gt["categories"]] == [1] and {a["category_id"] for a in gt["annotations"]} == {1}

    animal = read_coco_images(data / "animalpose_samples" / "test_animalpose.json", data / "animalpose_samples",
                              skeleton="from-data", progress=False)
    sk = animal.skeleton
    assert sk.num_keypoints == 20 and ("L_Eye", "R_Eye") in _names(sk.keypoints, sk.flip_pairs)
    assert len(sk.flip_pairs) == 8 and not disconnected_keypoints(sk)

    # CrowdPose files list COCO-17's limbs for their 14 keypoints: the built-in table reads them
    # by name; asked to trust the file, kpose names the bad field and the fix.
    crowd = read_coco(data / "crowdpose_samples" / "test_crowdpose.json", data / "crowdpose_samples", skeleton=None,
                      progress=False)
    assert crowd.skeleton == CROWDPOSE14 and "warning: area missing, computed from the box" in crowd.skipped
    with pytest.raises(DataError, match=r"categories\[\].skeleton names keypoints \[15, 16, 17\].*limbs"):
        read_coco(data / "crowdpose_samples" / "test_crowdpose.json", data / "crowdpose_samples",
                  skeleton="from-data", progress=False)


@pytest.mark.parametrize("folder, ann, skeleton, k, named", [
    ("ap10k_samples", "test_ap10k.json", "from-data", 17, "root_of_tail"),
    ("animalpose_samples", "test_animalpose.json", "from-data", 20, "L_EarBase"),
    ("crowdpose_samples", "test_crowdpose.json", "crowdpose14", 14, "head"),
])
def test_train_save_export_load_real_custom_skeletons(shared, tmp_path, folder, ann, skeleton, k, named):
    d = shared / "data" / folder
    run = kpose.train(recipe="efficientpose_rt", data=f"coco:{d / ann}:{d}", epochs=1,
                      overrides={"skeleton": skeleton, "train.steps_per_epoch": 1, "model.input_size": [64, 64],
                                 "train.batch_size": 2, "train.early_epochs": 0},
                      runs_dir=tmp_path, progress=False)
    sk = run.model.skeleton
    assert sk.num_keypoints == k and named in sk.keypoints and sk.flip_pairs
    assert run.model.keras_model.output_shape[-1] == k and "AP" in run.metrics
    assert {"PCK@0.05", "PCK@0.1", "PCK@0.2"} <= set(run.metrics)  # needs no OKS sigmas
    loaded = kpose.load(run.dir)
    assert loaded.skeleton == sk and loaded.skeleton.sigmas == sk.sigmas
    path = kpose.export(loaded, "tflite", "fp32", tmp_path / "export")
    exported = kpose.load(path)
    assert exported.skeleton.keypoints == sk.keypoints and exported.skeleton.limbs == sk.limbs
    assert exported.skeleton.flip_pairs == sk.flip_pairs
    poses = exported.predict(np.zeros((80, 60, 3), np.uint8))
    assert poses[0].keypoints.shape == (k, 3) and named in poses[0].names


def test_bottom_up_trains_on_an_animal_skeleton(shared, tmp_path):
    d = shared / "data" / "animalpose_samples"
    run = kpose.train(recipe="openpose_lightweight", data=f"coco:{d / 'test_animalpose.json'}:{d}", epochs=1,
                      overrides={"skeleton": "from-data", "train.steps_per_epoch": 1, "model.input_size": [64, 64],
                                 "train.batch_size": 2}, runs_dir=tmp_path, progress=False)
    sk = run.model.skeleton
    assert sk.num_keypoints == 20 and run.model.codec.limbs == sk.limbs
    assert [o[-1] for o in run.model.keras_model.output_shape] == [20, 2 * len(sk.limbs)]
    sk.limb_flip()  # the file's limbs are left/right symmetric: the PAF flip test works
    poses = kpose.load(run.dir).predict(str(d / "ca110.jpeg"), flip_test=True)
    assert all(p.keypoints.shape == (20, 3) for p in poses)
