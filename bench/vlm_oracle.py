"""Can the VLM recipe use PERFECT image features? A diagnostic that separates the encoder from
the recipe (LM, projector, stages), not a test.

    .venv/bin/python bench/vlm_oracle.py --data runs/tiny/data/shards --lm-cache runs/tiny/lm \
        [--preset tiny] [--stage2-samples 8192] [--out /tmp/vlm-oracle]

Every training and held-out image is replaced by ground-truth tokens built from its scene
metadata on the encoder's 8x8 patch grid: an object's cells hold the sum of fixed random
vectors for its category, colour, texture, style and size; the text's cells its word and
colour; the other cells the background style. Stages 1 and 2 then run exactly as for an
encoder (``vlm.pipeline.train_stages``, the preset's recipe and stage-0 LM). Prints, on held-out
(val) scenes, multiple-choice letter accuracy and greedy short-answer exact match per question
type, with the scene's own tokens vs another scene's: if a VLM cannot use these, no encoder
will help it.
"""

from __future__ import annotations

import argparse
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoderlab.data.reader import SampleDataset, index_source
from encoderlab.evaluate.stats import paired_difference
from encoderlab.suite.questions import QUESTION_TYPES, generate
from encoderlab.train.distributed import DistInfo
from encoderlab.vlm.config import load_vlm_config
from encoderlab.vlm.data import read_world, train_split
from encoderlab.vlm.generate import greedy_generate, left_pad, score_next_token
from encoderlab.vlm.lm import load_lm, pretrain_lm
from encoderlab.vlm.model import VLMModel
from encoderlab.vlm.pipeline import train_stages
from encoderlab.vlm.projector import build_projector
from encoderlab.vlm.template import Template
from encoderlab.vlm.tokenizer import IMAGE_TOKEN

GRID = 8


class OracleTokens:
    """Scene metadata -> ``[GRID * GRID, dim]`` tokens (fixed random vector per factor value)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._table: dict[str, torch.Tensor] = {}

    def vector(self, factor: str, value: Any) -> torch.Tensor:
        key = f"{factor}:{value}"
        if key not in self._table:
            gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            self._table[key] = torch.randn(self.dim, generator=gen)
        return self._table[key]

    def __call__(self, meta: dict[str, Any]) -> torch.Tensor:
        grid = torch.zeros(GRID, GRID, self.dim)
        grid += self.vector("background", (meta.get("background") or {}).get("style"))
        grid += self.vector("kind", meta["kind"])
        cell = meta["image_size"] / GRID

        def paint(bbox: list[float], value: torch.Tensor) -> None:
            x0, y0, x1, y1 = (min(GRID - 1, int(v // cell)) for v in bbox)
            grid[y0 : y1 + 1, x0 : x1 + 1] = value

        for obj in meta.get("objects", []):
            factors = ("category", "colour", "texture", "style", "size")
            paint(obj["bbox"], sum(self.vector(f, obj[f]) for f in factors))
        if meta.get("text"):
            text = meta["text"]
            paint(
                text["bbox"],
                self.vector("word", text["content"]) + self.vector("ink", text["colour"]),
            )
        return grid.reshape(GRID * GRID, self.dim)


def heldout(data: Path, n: int, oracle: OracleTokens) -> list[tuple[str, Any, torch.Tensor]]:
    """``(question type, Question, tokens)`` for the first ``n`` val scenes, one question each
    (drawn as ``vlm.sanity.heldout_questions`` draws them)."""
    refs, _ = index_source(data / "val")
    dataset = SampleDataset(refs, image_size=None)
    items = []
    for i in range(len(dataset)):
        if len(items) >= n:
            break
        meta = dataset[i]["meta"]
        rng = np.random.default_rng([0, i])
        for k in rng.permutation(len(QUESTION_TYPES)):
            qtype = list(QUESTION_TYPES)[int(k)]
            q = generate(qtype, meta, rng)
            if q is not None:
                items.append((qtype, q, oracle(meta)))
                break
    return items


@torch.no_grad()
def evaluate(model: VLMModel, template: Template, items: list, pad_id: int) -> None:
    tokens = torch.stack([t for _, _, t in items])
    shuffled = tokens.roll(1, 0)  # another scene's tokens: what the LM guesses without its own
    letters = [template.answer(x)[0] for x in "ABCD"]
    truth = torch.tensor(["ABCD".index(q.letter) for _, q, _ in items])
    mc_rows = [template.prompt(q.mc_prompt()) for _, q, _ in items]
    short_rows = [template.prompt(q.short_prompt()) for _, q, _ in items]
    short_truth = [q.answer.lower() for _, q, _ in items]
    short_ok = np.array([q.short_ok for _, q, _ in items])  # some types are multiple-choice only
    mc, short = {}, {}
    for name, feats in (("own", tokens), ("other", shuffled)):
        picks, answers = [], []
        for s in range(0, len(items), 64):
            ids, mask = left_pad(mc_rows[s : s + 64], pad_id)
            logp = score_next_token(model.lm, model.embed(ids, feats[s : s + 64]), mask)
            picks.append(logp[:, letters].argmax(1))
            ids, mask = left_pad(short_rows[s : s + 64], pad_id)
            out = greedy_generate(
                model.lm, model.embed(ids, feats[s : s + 64]), mask, 8, template.tok
            )
            answers += [
                a.strip().lower() for a in template.tok.batch_decode(out, skip_special_tokens=True)
            ]
        mc[name] = (torch.cat(picks) == truth).double().numpy()
        short[name] = np.array(
            [a == t for a, t in zip(answers, short_truth, strict=True)], dtype=float
        )
    print(
        f"{'question type':<16}{'n':>5}{'MC own':>9}{'MC other':>10}{'short own':>11}{'short other':>13}"
    )
    for qtype in sorted({q for q, _, _ in items}):
        rows = [i for i, (q, _, _) in enumerate(items) if q == qtype]
        vals = [mc["own"][rows].mean(), mc["other"][rows].mean()]
        ok = [i for i in rows if short_ok[i]]
        vals += [short["own"][ok].mean(), short["other"][ok].mean()] if ok else [np.nan] * 2
        print(
            f"{qtype:<16}{len(rows):>5}"
            + "".join(f"{v:>{w}.2f}" for v, w in zip(vals, (9, 10, 11, 13), strict=True))
        )
    short = {k: v[short_ok] for k, v in short.items()}
    for name, res in (("MC letter", mc), ("short answer", short)):
        gain = paired_difference(res["own"], res["other"])
        print(
            f"{name}: own {res['own'].mean():.3f}, other {res['other'].mean():.3f}, "
            f"own - other {gain.value:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}]"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a SynthWorld data set (train + val)")
    ap.add_argument(
        "--lm-cache", type=Path, required=True, help="stage-0 cache (e.g. runs/tiny/lm)"
    )
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--dim", type=int, default=128, help="token width (an encoder's embed dim)")
    ap.add_argument("--stage2-samples", type=int, default=None, help="override stage 2's length")
    ap.add_argument("--heldout", type=int, default=400)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    cfg = load_vlm_config(args.preset)
    if args.stage2_samples:
        n = args.stage2_samples
        cfg = cfg.model_copy(
            update={
                "stage2": cfg.stage2.model_copy(
                    update={
                        "examples": n,
                        "train": cfg.stage2.train.model_copy(update={"samples": n}),
                    }
                )
            }
        )
    world = read_world(
        train_split(args.data), max(cfg.image_examples, cfg.stage0.examples), None, images=False
    )
    lm, tokenizer = load_lm(pretrain_lm(cfg, world, args.lm_cache) / "lm")
    oracle = OracleTokens(args.dim)
    features = torch.stack([oracle(m) for m in world.metas[: cfg.image_examples]])
    torch.manual_seed(cfg.seed)
    projector = build_projector("mlp2x_gelu", args.dim, lm.config.hidden_size)
    model = VLMModel(projector, lm, int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)))
    template = Template(tokenizer, GRID * GRID, cfg.max_text_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        stages = train_stages(model, features, template, world, cfg, out, DistInfo())
    for name, s in stages.items():
        print(
            f"{name}: {s['steps']} steps, {s['seconds']:.0f} s, final loss {s['final'].get('loss', float('nan')):.3f}"
        )
    model.eval()
    evaluate(model, template, heldout(args.data, args.heldout, oracle), int(tokenizer.pad_token_id))


if __name__ == "__main__":
    main()
