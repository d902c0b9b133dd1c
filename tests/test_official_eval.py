"""The official EfficientPose weights, through kpose's whole path: MPII reader, eval
pipeline crops, DARK decoding, inverse transform, PCKh."""
import pytest

import kpose


@pytest.mark.parametrize("name,minimum", [("EfficientPoseRT.h5", 0.95), ("EfficientPoseRT_LITE.h5", 0.75)])
def test_official_weights_pckh_on_mpii_samples(shared, name, minimum):
    mpii = shared / "data" / "mpii_samples"
    m = kpose.evaluate(shared / "peers" / "efficientpose" / name,
                       data=f"mpii:{mpii / 'test_mpii.json'}:{mpii}", progress=False)
    # Measured: RT 0.985, RT_LITE 0.818 (5 people, 66 labelled joints without pelvis/thorax).
    assert m["PCKh@0.5"] >= minimum


def test_cli_predict_with_official_weights(shared, tmp_path, capsys):
    import json

    from kpose.cli import main

    img = shared / "peers" / "efficientpose" / "MPII.jpg"
    assert main(["predict", str(shared / "peers/efficientpose/EfficientPoseRT.h5"), str(img),
                 "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "head_top" in out and (tmp_path / "MPII_pose.png").stat().st_size > 10_000
    pose = json.loads((tmp_path / "MPII_pose.json").read_text())[0]
    assert len(pose["keypoints"]) == 16 and pose["names"][9] == "head_top"


def test_cli_errors_name_the_problem(shared, capsys):
    from kpose.cli import main

    h5 = str(shared / "peers/efficientpose/EfficientPoseRT.h5")
    assert main(["evaluate", h5, "--data", "cocoo:a.json:b"]) == 1
    err = capsys.readouterr().err
    assert "unknown data spec" in err and len(err.strip().splitlines()) == 1  # one line, no traceback
    assert main(["evaluate", "no/such/run", "--data", "synthetic"]) == 1
    assert "kpose.json" in capsys.readouterr().err


def test_flip_test_agrees_with_plain_prediction(shared):
    """Averaging with the mirrored crop must swap left/right channels back: a wrong
    swap would pull each wrist towards the other one."""
    import numpy as np

    model = kpose.load(shared / "peers" / "efficientpose" / "EfficientPoseRT.h5")
    img = str(shared / "peers" / "efficientpose" / "MPII.jpg")
    plain = model.predict(img)[0].keypoints
    flipped = model.predict(img, flip_test=True)[0].keypoints
    # 1024 px image, 224 px crop: 1 crop pixel is 4.6 image pixels
    assert np.median(np.linalg.norm(plain[:, :2] - flipped[:, :2], axis=1)) < 10
    mpii = shared / "data" / "mpii_samples"
    m = kpose.evaluate(model, data=f"mpii:{mpii / 'test_mpii.json'}:{mpii}", progress=False, flip_test=True)
    assert m["PCKh@0.5"] >= 0.95


def test_load_of_an_h5_that_is_not_an_official_release_says_what_it_is(tmp_path):
    import h5py
    import pytest

    import kpose
    from kpose._tf import keras

    weights = tmp_path / "weights.h5"
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="tiny")
    net.save_weights(str(weights))
    with pytest.raises(ValueError, match=r"weights\.h5 is a weights-only file.*kpose\.load\('<run>/model'\)"
                                         r".*kpose\.load takes a kpose run or model folder"):
        kpose.load(weights)
    full = tmp_path / "other.h5"
    net.save(str(full))
    with pytest.raises(ValueError, match=r"other\.h5: a Keras model \(Sequential 'tiny'\), not an EfficientPose RT"
                                         r".*kpose\.load takes"):
        kpose.load(full)
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(ValueError, match=r"empty\.h5 is an HDF5 file without a Keras model"):
        kpose.load(empty)
