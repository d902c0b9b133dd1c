"""What a recipe builds: its skeleton, network config, training targets, codec, the
config saved with the model, and the deployed (inference-outputs) network."""
from __future__ import annotations

from typing import Any

from kpose._tf import keras
from kpose.codecs import HeatmapCodec, LimbHeatmapCodec, PafCodec
from kpose.data.coco_skeleton import skeleton_request
from kpose.models import TOP_DOWN, build_network, get_family, network_outputs
from kpose.pose_model import PoseModel, model_config
from kpose.recipe import load_recipe
from kpose.skeletons import Skeleton, skeleton_from_entry
from kpose.training.targets import target_specs


def untrained_model(recipe: str = "efficientpose_rt", overrides: dict[str, Any] | None = None) -> PoseModel:
    """The PoseModel a recipe trains, with fresh weights (for export and QAT checks)."""
    return untrained_networks(recipe, overrides)[1]


def untrained_networks(recipe: str = "efficientpose_rt",
                       overrides: dict[str, Any] | None = None) -> tuple[keras.Model, PoseModel]:
    """(training network, PoseModel of its inference outputs) of a recipe, with fresh weights
    they share: one build for a training step and a prediction."""
    cfg = load_recipe(recipe, overrides)
    net = build_network(network_config(cfg), training_outputs=True)
    config = recipe_model_config(cfg, {"train": cfg["data"]["train"], "val": cfg["data"]["val"]})
    return net, PoseModel(inference_network(net, cfg), config)


def recipe_skeleton(cfg: dict) -> Skeleton:
    """The recipe's skeleton: a built-in name, or the full entry `train` resolved from the data."""
    if skeleton_request(cfg["skeleton"]) is not None:
        raise ValueError(f"recipe skeleton {cfg['skeleton']!r} is read from the training data: only "
                         f"kpose.train resolves it (untrained models need a built-in skeleton)")
    return skeleton_from_entry(cfg["skeleton"])


def network_config(cfg: dict) -> dict:
    """The part of a model config that build_network needs, from a resolved recipe."""
    mcfg = cfg["model"]
    return {"family": mcfg["family"], "variant": mcfg["variant"],
            "input_size": [int(v) for v in mcfg["input_size"]],
            "skeleton": recipe_skeleton(cfg).to_dict()}


def recipe_targets(cfg: dict, input_size) -> list:
    """Target specs of the recipe's network for batches of `input_size`."""
    return target_specs(network_outputs(network_config(cfg)), input_size, cfg["codec"]["sigma"],
                        cfg["codec"]["paf_width"], recipe_skeleton(cfg).num_keypoints,
                        cfg["codec"].get("limb_sigma"))  # absent in run folders older than the key


# The kind of a bottom-up network's second inference output -> the codec that groups people with it.
BOTTOM_UP_CODECS = {"pafs": "paf", "limb_heatmaps": "limb_heatmap"}


def codec_type(task: str, outputs) -> str:
    """The codec type that decodes a network with these declared outputs: "heatmap" for a
    top-down one, else the one its limb output kind needs (BOTTOM_UP_CODECS)."""
    if task == TOP_DOWN:
        return "heatmap"
    kinds = {o.kind for o in outputs if o.inference} & set(BOTTOM_UP_CODECS)
    if len(kinds) != 1:
        raise ValueError(f"a bottom-up network needs exactly one inference output of kind "
                         f"{' or '.join(BOTTOM_UP_CODECS)} to group people with; it declares "
                         f"{sorted(o.kind for o in outputs if o.inference)}")
    return BOTTOM_UP_CODECS[kinds.pop()]


def recipe_model_config(cfg: dict, data_spec: dict) -> dict:
    """The config saved with the trained model: its codec decodes the inference output."""
    ncfg = network_config(cfg)
    input_size = tuple(ncfg["input_size"])
    outputs = network_outputs(ncfg)
    specs = [t for o, t in zip(outputs, recipe_targets(cfg, input_size)) if o.inference]
    final = next(s for s in specs if s.kind == "heatmaps")
    skeleton = recipe_skeleton(cfg)
    task = get_family(ncfg["family"]).task
    wanted = codec_type(task, outputs)
    if cfg["codec"]["type"] != wanted:
        raise ValueError(f"recipe codec.type={cfg['codec']['type']!r}: a {task} model ({ncfg['family']}, "
                         f"outputs {', '.join(s.kind for s in specs)}) is decoded with the {wanted!r} codec; "
                         f"set codec.type: {wanted} in the recipe")
    if wanted == "heatmap":
        codec = HeatmapCodec(input_size=input_size, heatmap_size=final.size, sigma=final.sigma)
    elif wanted == "paf":
        codec = PafCodec(input_size=input_size, heatmap_size=final.size, limbs=skeleton.limbs,
                         limb_width=float(cfg["codec"]["paf_width"]), sigma=final.sigma)
    else:
        limb = next(s for s in specs if s.kind == "limb_heatmaps")
        codec = LimbHeatmapCodec(input_size=input_size, heatmap_size=final.size, limbs=skeleton.limbs,
                                 limb_sigma=limb.sigma, sigma=final.sigma)
    return model_config(ncfg["family"], ncfg["variant"], input_size, skeleton, codec,
                        crop_padding=cfg["augment"]["box_padding"], recipe=cfg["name"], data=data_spec)


def inference_network(net, cfg: dict):
    """The deployed network: the training network's inference outputs only (shared layers)."""
    outputs = network_outputs(network_config(cfg))
    keep = [out for spec, out in zip(outputs, net.outputs) if spec.inference]
    return keras.Model(net.inputs, keep[0] if len(keep) == 1 else keep, name=net.name)
