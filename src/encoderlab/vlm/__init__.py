"""LLaVA-1.5-style VLMs built the same way on any encoder: frozen encoder -> penultimate-layer
patch tokens -> MLP projector -> causal LM (stage 0 LM, stage 1 alignment, stage 2 instruction).

``vlm = load(path)`` gives ``vlm.score_choices(images, prompts)``, ``vlm.generate(images,
prompts)`` and ``vlm.checkpoint_hash``; ``train_vlm`` builds a checkpoint.
"""

from encoderlab.vlm.checkpoint import load
from encoderlab.vlm.config import LMConfig, StageConfig, VLMConfig, load_vlm_config
from encoderlab.vlm.model import VLM
from encoderlab.vlm.pipeline import train_vlm

__all__ = ["VLM", "LMConfig", "StageConfig", "VLMConfig", "load", "load_vlm_config", "train_vlm"]
