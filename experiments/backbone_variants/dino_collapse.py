"""Where does DINO lose the difference between images: backbone, head MLP or prototypes?

    .venv/bin/python experiments/backbone_variants/dino_collapse.py [--preset tiny]
        [--steps 40] [--data DIR] [--out DIR]

Trains the preset's DINO for ``--steps`` steps of its own schedule (``encoderlab pretrain``'s
code, cut short) and, at a few steps, passes 128 fixed validation images through the student
and the teacher. Per network it prints the mean pairwise cosine of the pooled backbone
features (``feat cos``) and of the L2-normalised bottleneck (``bottleneck cos``; 1 = every
image the same direction) and the std of each prototype logit across images (``logit std``;
divided by the teacher temperature it is how much the teacher's softmax can differ between
images). At step 0 student and teacher must agree: this is how a teacher whose BatchNorm ran
in eval mode (fixed in edb3fd2) showed itself (feat cos 0.995 against the student's 0.53).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from dino_init import first_images, mean_pairwise_cosine  # this folder's script

from encoderlab.data.augment import normalize
from encoderlab.objectives.dino import DinoObjective
from encoderlab.study.config import load_study
from encoderlab.train.pretrain import PretrainConfig, pretrain

REPORT_AT = (0, 2, 4, 6, 8, 10, 14, 18, 24, 30, 40, 60, 80, 120, 200, 300)


def spreads(backbone: torch.nn.Module, head: torch.nn.Module, images: torch.Tensor) -> str:
    feats = backbone(images)
    z = F.normalize(head.mlp(feats), dim=-1)
    logits = head.last_layer(z)
    return (
        f"{mean_pairwise_cosine(feats):8.3f} {mean_pairwise_cosine(z):14.3f} "
        f"{float(logits.std(0).mean()):9.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards"))
    parser.add_argument("--out", type=Path, default=None, help="run dir (default: a temp dir)")
    args = parser.parse_args()
    cfg = load_study(args.preset)
    images = normalize(first_images(args.data / "val", 128))
    print(f"{'step':>4s}  {'student: feat cos, bottleneck cos, logit std':45s}  teacher: same")
    end_of_step = DinoObjective.on_step_end

    def report(self: DinoObjective, step: int, total_steps: int) -> None:
        end_of_step(self, step, total_steps)
        if step in REPORT_AT:
            with torch.no_grad():
                student = spreads(self.encoder, self.head, images)
                teacher = spreads(self.teacher.backbone, self.teacher.head, images)
            print(f"{step:4d}  {student:45s}  {teacher}", flush=True)

    DinoObjective.on_step_end = report  # type: ignore[method-assign]
    run_cfg = PretrainConfig(encoder=cfg.encoder, objective=cfg.objective, train=cfg.pretrain)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "dino"
        pretrain("dino", run_cfg, args.data / "train", out, progress=False, max_steps=args.steps)


if __name__ == "__main__":
    main()
