"""SynthWorld: a procedural image-caption world whose every factor is known.

Object scenes (1-3 pictograms with colour, texture, size, position, rendering style, on a
background, with optional embedded text) and charts, tables and documents, each with full
metadata and an alt-text-like caption. ``render`` is a pure function of a scene, so
``render(scene.replace(colour="red"))`` is an exact single-factor counterfactual.
"""

from encoderlab.data.synthworld.captions import CaptionPolicy, make_caption
from encoderlab.data.synthworld.documents import DocScene, sample_document
from encoderlab.data.synthworld.fonts import FONTS, font_path
from encoderlab.data.synthworld.layout import counterfactual, sample_object_scene
from encoderlab.data.synthworld.raster import render, scene_masks
from encoderlab.data.synthworld.scene import FACTORS, Obj, Scene, Text
from encoderlab.data.synthworld.world import (
    WorldConfig,
    generate_sample,
    sample_rngs,
    sample_scene,
)

__all__ = [
    "FACTORS",
    "FONTS",
    "CaptionPolicy",
    "DocScene",
    "Obj",
    "Scene",
    "Text",
    "WorldConfig",
    "counterfactual",
    "font_path",
    "generate_sample",
    "make_caption",
    "render",
    "sample_document",
    "sample_object_scene",
    "sample_rngs",
    "sample_scene",
    "scene_masks",
]
