"""Openclipart (the Debian package ``openclipart-png``: ~8,100 public-domain PNGs under
``/usr/share/openclipart/png/<category>/...``) as a labelled image source for the importer.

Labels come from where a file is, never from a hand-picked list of files:

- ``category``: the top-level folder (``animals``, ``food``, ``transportation``...);
  ``subcategory``: the whole folder path (``animals/mammals``).
- ``superclass``: a coarser group of categories (``SUPERCLASSES``: living things, food,
  man-made objects, places, signs, leisure); a category not in that table is its own superclass.
- ``title`` (the caption): the file name with ``_`` and ``-`` as spaces and a trailing number
  dropped (``chemistry_flask_matthew__02.png`` -> ``chemistry flask matthew``); openclipart's
  file names are its titles, often followed by (a cut of) the author's name.
- ``num_objects``: 1 (a clip-art file draws one subject), so the control check, which labels
  single-object images, uses every image.

**The curation rule** (files that are not pictures of objects): a file is left out, and
counted as ``not an object``, when any folder on its path (case-insensitive) is one of
``NON_OBJECT_FOLDERS``: page backgrounds and fills (``special``: gradients, patterns, page
layout examples; ``decorations``: borders and flourishes), abstract shapes and diagram parts
(``shapes``: rating stars, arrows, callouts, flowchart symbols, jigsaw pieces; ``diagrams``),
user-interface glyphs (``icons``, ``buttons``, ``led``), ``logos``, signalling alphabets
(``semaphore``) and files the package itself never sorted (``unsorted``, ``duplicates``). Then
the importer's image rules apply to what is left (blank images, exact duplicates, unreadable
files: ``data.importer``). The package links ~1,200 files to others under a second name:
those links are duplicates, skipped before any image is read.
"""

from __future__ import annotations

import re
from pathlib import Path

from encoderlab.data.importer import ImportItem, safe_key
from encoderlab.errors import DataError

__all__ = [
    "NON_OBJECT_FOLDERS",
    "OPENCLIPART_ROOT",
    "SUPERCLASSES",
    "non_object_folder",
    "scan_clipart",
    "title_from_filename",
]

OPENCLIPART_ROOT = Path("/usr/share/openclipart/png")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")

NON_OBJECT_FOLDERS = frozenset(
    {
        # page backgrounds and fills, page layouts, ornaments
        "special",
        "gradients",
        "patterns",
        "backgrounds",
        "textures",
        "examples",
        "decorations",
        "borders",
        # abstract shapes and diagram parts (shapes/ holds rating stars, arrows, callouts...)
        "shapes",
        "stars",
        "arrows",
        "callouts",
        "flowchart",
        "jigsaw",
        "diagrams",
        # user-interface glyphs, logos, signalling alphabets
        "icons",
        "buttons",
        "led",
        "logos",
        "semaphore",
        # never sorted by the package
        "unsorted",
        "duplicates",
    }
)

SUPERCLASSES: dict[str, str] = {
    "animals": "living things",
    "people": "living things",
    "plants": "living things",
    "food": "food",
    "computer": "man-made objects",
    "containers": "man-made objects",
    "electronics": "man-made objects",
    "office": "man-made objects",
    "tools": "man-made objects",
    "science": "man-made objects",
    "education": "man-made objects",
    "transportation": "man-made objects",
    "buildings": "places",
    "geography": "places",
    "signs_and_symbols": "signs",
    "recreation": "leisure",
}

_TRAILING_NUMBER = re.compile(r"(?:\s+\d+[a-z]?)+$")


def title_from_filename(name: str) -> str:
    """``chemistry_flask_matthew__02.png`` -> ``chemistry flask matthew``."""
    stem = Path(name).stem
    words = re.sub(r"[_\-\s]+", " ", stem).strip()
    words = _TRAILING_NUMBER.sub("", words).strip()
    return words or stem


def category_name(folder: str) -> str:
    """A folder name as words: ``signs_and_symbols`` -> ``signs and symbols``."""
    return folder.replace("_", " ")


def non_object_folder(relative: Path) -> str | None:
    """The first folder of ``relative`` that the curation rule excludes, else None."""
    for part in relative.parent.parts:
        if part.lower() in NON_OBJECT_FOLDERS:
            return part
    return None


def scan_clipart(
    root: str | Path = OPENCLIPART_ROOT,
) -> tuple[list[ImportItem], list[tuple[str, str, str]]]:
    """Importable files under ``root`` and the ones the curation rule leaves out, as
    ``(file, "not an object", "folder X")``; files directly under ``root`` have no category
    and are skipped as ``no category``; a symbolic link to another file of the scan is a
    ``duplicate`` (the package links many pictures under a second name)."""
    root = Path(root)
    if not root.is_dir():
        hint = " (apt-get install openclipart-png)" if root == OPENCLIPART_ROOT else ""
        raise DataError(f"{root}: no such directory{hint}")
    items: list[ImportItem] = []
    skipped: list[tuple[str, str, str]] = []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    real = {  # files imported under their own name: a link to one of them is a duplicate
        p.resolve()
        for p in files
        if not p.is_symlink()
        and len(p.relative_to(root).parts) > 1
        and non_object_folder(p.relative_to(root)) is None
    }
    for path in files:
        relative = path.relative_to(root)
        if path.is_symlink() and path.resolve() in real:
            # the package links many files under a second name; import each picture once
            target = path.resolve().relative_to(root.resolve()).as_posix()
            skipped.append((str(path), "duplicate", f"symlink to {target}"))
            continue
        if len(relative.parts) < 2:
            skipped.append((str(path), "no category", "not in a category folder"))
            continue
        excluded = non_object_folder(relative)
        if excluded is not None:
            skipped.append((str(path), "not an object", f"folder {excluded!r}"))
            continue
        top = relative.parts[0]
        category = category_name(top)
        title = title_from_filename(path.name)
        meta = {
            "category": category,
            "superclass": SUPERCLASSES.get(top.lower(), category),
            "subcategory": "/".join(category_name(p) for p in relative.parent.parts),
            "title": title,
            "num_objects": 1,
            "source": relative.as_posix(),
        }
        items.append(ImportItem(path, safe_key(relative.as_posix()), title, meta))
    return items, skipped
