"""Scene descriptions: every random choice of an image, stored explicitly.

A scene is a frozen value; ``render`` is a pure function of it. Counterfactuals are therefore
just ``scene.replace(factor=value)``: the layout, jitter and noise seeds of everything else stay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from encoderlab.data.synthworld import vocab
from encoderlab.data.synthworld.fonts import FONTS
from encoderlab.errors import EncoderlabError

# Factors the embedding analysis varies. Object-level ones act on one object (default: the
# primary object 0); ``font`` is the embedded text's font.
FACTORS: tuple[str, ...] = (
    "category",
    "text",
    "colour",
    "texture",
    "style",
    "background",
    "position",
    "size",
)
OBJECT_FACTORS: frozenset[str] = frozenset(
    {"category", "colour", "texture", "style", "position", "size"}
)
EXTRA_FACTORS: tuple[str, ...] = ("font",)


@dataclass(frozen=True)
class Obj:
    """One object. ``position`` is its centre as fractions of the image side; ``seed`` fixes
    its texture phase and sketch jitter."""

    category: str
    colour: str
    texture: str
    style: str
    size: str
    position: tuple[float, float]
    flip: bool
    seed: int

    def to_meta(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "superclass": vocab.superclass(self.category),
            "colour": self.colour,
            "texture": self.texture,
            "style": self.style,
            "size": self.size,
            "position": list(self.position),
            "flip": self.flip,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Text:
    """Embedded text. ``content`` None means no text is drawn; the other fields are kept so
    that ``scene.replace(text="...")`` adds text with a fixed font, size, colour and place."""

    content: str | None
    kind: str  # word | number | price
    font: str
    size: str
    colour: str
    plate: str | None
    position: tuple[float, float]

    def to_meta(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "kind": self.kind,
            "font": self.font,
            "size": self.size,
            "colour": self.colour,
            "plate": self.plate,
            "position": list(self.position),
        }


@dataclass(frozen=True)
class Scene:
    """1-3 objects on a background, optional text on top. ``size`` is the image side in px."""

    size: int
    background: str
    bg_seed: int
    objects: tuple[Obj, ...]
    text: Text

    kind: Literal["objects"] = "objects"

    def replace(self, obj: int | Literal["all"] = 0, **changes: Any) -> Scene:
        """The same scene with factors changed, e.g. ``scene.replace(colour="red")``.

        Object-level factors act on object ``obj`` (0 = primary; ``"all"`` = every object);
        ``text`` sets the embedded text (None removes it), ``font`` its font.
        """
        known = (*FACTORS, *EXTRA_FACTORS)
        objects = list(self.objects)
        targets = range(len(objects)) if obj == "all" else [obj]
        if obj != "all" and not 0 <= obj < len(objects):
            raise EncoderlabError(f"object index {obj} out of range (scene has {len(objects)})")
        scene_changes: dict[str, Any] = {}
        text = self.text
        for factor, value in changes.items():
            if factor not in known:
                raise EncoderlabError(f"unknown factor {factor!r}; known: {', '.join(known)}")
            _check_value(factor, value)
            if factor in OBJECT_FACTORS:
                if factor == "position":
                    value = (float(value[0]), float(value[1]))
                for i in targets:
                    objects[i] = dataclasses.replace(objects[i], **{factor: value})
            elif factor == "text":
                text = dataclasses.replace(text, content=value)
            elif factor == "font":
                text = dataclasses.replace(text, font=value)
            else:
                scene_changes[factor] = value
        return dataclasses.replace(self, objects=tuple(objects), text=text, **scene_changes)

    def to_meta(self) -> dict[str, Any]:
        """JSON-able description of every factor, with pixel boxes ``[x0, y0, x1, y1)``."""
        # boxes come from the (memoised) rendered layers; raster imports this module
        from encoderlab.data.synthworld.raster import object_layer, text_layer

        objects = []
        for o in self.objects:
            m = o.to_meta()
            m["bbox"] = list(object_layer(o, self.size).bbox)
            objects.append(m)
        text = None
        if self.text.content is not None:
            text = self.text.to_meta()
            text["bbox"] = list(text_layer(self.text, self.size).bbox)
        return {
            "kind": self.kind,
            "image_size": self.size,
            "background": {"style": self.background, "seed": self.bg_seed},
            "num_objects": len(self.objects),
            "objects": objects,
            "text": text,
        }


def _check_value(factor: str, value: Any) -> None:
    allowed: dict[str, Any] = {
        "category": vocab.CATEGORIES,
        "colour": vocab.COLOURS,
        "texture": vocab.TEXTURES,
        "style": vocab.STYLES,
        "size": vocab.SIZES,
        "background": vocab.BACKGROUNDS,
        "font": FONTS,
    }
    if factor in allowed:
        if value not in allowed[factor]:
            raise EncoderlabError(
                f"invalid {factor} {value!r}; choose from: {', '.join(allowed[factor])}"
            )
    elif factor == "position":
        ok = isinstance(value, tuple | list) and len(value) == 2
        if not ok or not all(0.0 <= float(v) <= 1.0 for v in value):
            raise EncoderlabError(f"invalid position {value!r}; expected (x, y) in [0, 1]")
    elif factor == "text" and value is not None and (not isinstance(value, str) or not value):
        raise EncoderlabError(f"invalid text {value!r}; expected a non-empty string or None")
