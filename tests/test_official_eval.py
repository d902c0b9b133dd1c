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
