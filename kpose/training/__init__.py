"""Training: `kpose.train(recipe=...)` and what it is made of.

targets (declared outputs -> tf.data targets), trainer (losses, schedule), transfer
(starting from trained weights), validation (the evaluation callback), recipe_model (what
a recipe builds: network, codec, model config), qat_stage (quantisation-aware fine-tuning),
engine (the one call), distill (label-free QAT of a float model).
"""
from kpose.training.engine import Run, train
from kpose.training.recipe_model import untrained_model, untrained_networks

__all__ = ["Run", "train", "untrained_model", "untrained_networks"]
