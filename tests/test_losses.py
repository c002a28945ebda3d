"""The four objectives: each loss against an independent computation, their schedules and
state updates, and DDP equivalence (2 gloo ranks at half batch == 1 process at full batch)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from encoderlab.encoders import EncoderConfig, build_encoder
from encoderlab.encoders.cnn import GlobalBatchNorm2d
from encoderlab.errors import ConfigError
from encoderlab.objectives import Objective, ObjectiveConfig, build_objective
from encoderlab.objectives.dino_loss import DinoLoss, sinkhorn_knopp

CFG = ObjectiveConfig(
    clip={"embed_dim": 32, "text": {"width": 32, "layers": 1, "heads": 2, "context_length": 16}},
    siglip={"embed_dim": 32, "text": {"width": 32, "layers": 1, "heads": 2, "context_length": 16}},
    dino={
        "out_dim": 64,
        "hidden_dim": 48,
        "bottleneck_dim": 16,
        "n_local_crops": 2,
        "local_crop_size": 16,
        "head_batchnorm": True,  # as the presets: the DDP test covers its all-reduced statistics
    },
)


# The shared backbones at micro size: the ViT, and a timm ConvNeXt and ResNet (GroupNorm)
# shrunk through encoder.timm_kwargs to stride 16, so DINO's 16-px local crops fit; every
# objective must behave the same on each.
ENCODERS = {
    "vit": {"size": "micro", "image_size": 32, "patch_size": 8},
    "convnext": {
        "arch": "convnext_atto",
        "timm_kwargs": {"dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "output_stride": 16},
        "image_size": 32,
    },
    "resnet": {
        "arch": "resnet18",
        "timm_kwargs": {
            "layers": [1, 1, 1, 1],
            "channels": [8, 16, 24, 32],
            "stem_width": 8,
            "output_stride": 16,
        },
        "image_size": 32,
    },
}
# ... and the ResNet with BatchNorm over the global batch (encoder.norm: batch)
ENCODERS["resnet-bn"] = {**ENCODERS["resnet"], "norm": "batch"}


def make(name: str, cfg: ObjectiveConfig = CFG, arch: str = "vit") -> Objective:
    enc = build_encoder(EncoderConfig(**ENCODERS[arch]))
    return build_objective(name, enc, cfg)


def data(n: int = 8) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g).to(torch.uint8)
    colours = ["red", "green", "blue", "white"]
    texts = [f"a {colours[i % 4]} shape number {i}" for i in range(n)]
    return images, texts, torch.arange(1000, 1000 + n)


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


# -- contrastive ---------------------------------------------------------------------------------


def test_clip_loss_is_symmetric_infonce() -> None:
    obj = make("clip")
    img, txt = unit(6, 32, 1), unit(6, 32, 2)
    with torch.no_grad():
        obj.logit_scale.fill_(math.log(7.0))
    loss, extra = obj.contrastive_loss(img, txt)
    logits = 7.0 * img @ txt.T
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(extra["logit_scale"], torch.tensor(7.0))


def test_clip_forward_scores_its_own_features() -> None:
    obj = make("clip")
    images, texts, ids = data()
    batch = obj.prepare(images, texts, ids, step=0)
    assert batch["images"].shape == (8, 3, 32, 32) and batch["text_input_ids"].shape == (8, 16)
    out = obj(batch)
    with torch.no_grad():
        img = obj.image_features(batch["images"])
        txt = obj.text_features({"input_ids": batch["text_input_ids"]})
        logits = math.exp(math.log(1 / 0.07)) * img @ txt.T
        labels = torch.arange(8)
        expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(out["loss"].detach(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(8))
    emb = obj.embed_text(["a red shape"])
    assert emb.shape == (1, 32) and not emb.requires_grad


def test_siglip_loss_matches_the_pairwise_formula() -> None:
    obj = make("siglip")
    assert obj.logit_scale.item() == pytest.approx(math.log(10))
    assert obj.logit_bias.item() == pytest.approx(-10.0)
    img, txt = unit(5, 32, 3), unit(5, 32, 4)
    scale, bias = 4.0, -1.5
    with torch.no_grad():
        obj.logit_scale.fill_(math.log(scale))
        obj.logit_bias.fill_(bias)
    loss, extra = obj.contrastive_loss(img, txt)
    total = 0.0
    for i in range(5):
        for j in range(5):
            z = scale * float(img[i].double() @ txt[j].double()) + bias
            label = 1.0 if i == j else -1.0
            total += math.log1p(math.exp(-label * z))  # -log sigmoid(label * z)
    assert loss.item() == pytest.approx(total / 5, rel=1e-5)
    assert extra["logit_bias"].item() == pytest.approx(bias)


@pytest.mark.parametrize("arch", list(ENCODERS))
@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_contrastive_objective_learns_a_batch(name: str, arch: str) -> None:
    obj = make(name, arch=arch)
    images, texts, ids = data()
    batch = obj.prepare(images, texts, ids, step=0)
    opt = torch.optim.AdamW(obj.param_groups(0.1), lr=2e-3)
    losses = []
    for step in range(6):
        obj.on_step_start(step, 6, opt)
        loss = obj(batch)["loss"]
        loss.backward()
        obj.after_backward(step)
        opt.step()
        opt.zero_grad()
        obj.on_step_end(step, 6)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


@pytest.mark.parametrize("arch", list(ENCODERS))
@pytest.mark.parametrize("name", ["clip", "siglip", "dino"])
def test_every_trainable_parameter_gets_a_gradient(name: str, arch: str) -> None:
    # DDP (without find_unused_parameters) requires it
    obj = make(name, arch=arch)
    images, texts, ids = data(4)
    obj(obj.prepare(images, texts, ids, step=0))["loss"].backward()
    missing = [n for n, p in obj.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_logit_scale_is_clamped_after_the_step() -> None:
    obj = make("clip")
    with torch.no_grad():
        obj.logit_scale.fill_(6.0)
    obj.on_step_end(0, 10)
    assert obj.logit_scale.item() == pytest.approx(math.log(100))


def test_param_groups_skip_decay_on_biases_norms_scales_and_embeddings() -> None:
    obj = make("siglip")
    groups = {g["name"]: g for g in obj.param_groups(0.2)}
    names = {id(p): n for n, p in obj.named_parameters()}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    decay = {names[id(p)] for p in groups["decay"]["params"]}
    assert groups["decay"]["weight_decay"] == 0.2 and groups["no_decay"]["weight_decay"] == 0.0
    for n in (
        "logit_scale",
        "logit_bias",
        "encoder.vit.pos_embed",
        "encoder.vit.cls_token",
        "encoder.vit.norm.weight",
        "encoder.vit.blocks.0.attn.qkv.bias",
        "text.transformer.positional_embedding",
    ):
        assert n in no_decay, n
    for n in ("encoder.vit.blocks.0.attn.qkv.weight", "image_proj.weight"):
        assert n in decay, n
    assert decay | no_decay == {n for n, p in obj.named_parameters() if p.requires_grad}
    assert not decay & no_decay


def test_unknown_objective_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="known: clip, siglip, clip-pretrained-text, dino"):
        make("mae")


# -- DINO ----------------------------------------------------------------------------------------


def softmax(v: list[float]) -> list[float]:
    e = [math.exp(x - max(v)) for x in v]
    return [x / sum(e) for x in e]


def test_dino_loss_and_centre_by_hand() -> None:
    # 2 samples, 3-dim outputs, 2 global + 1 local crop (student), 2 global crops (teacher)
    student = [[1.0, 0.2, -0.5], [0.3, 0.3, 0.1], [-0.2, 0.8, 0.4],
               [0.0, -1.0, 0.5], [0.6, 0.1, 0.2], [0.9, -0.3, 0.0]]  # fmt: skip
    teacher = [[0.5, 0.1, -0.2], [0.2, 0.4, 0.0], [0.1, -0.3, 0.6], [0.7, 0.2, 0.1]]
    centre = [0.1, -0.2, 0.05]
    t_temp, s_temp = 0.04, 0.1

    terms = []
    for iq in range(2):  # teacher global crop
        for v in range(3):  # student crop
            if v == iq:
                continue
            per_sample = []
            for b in range(2):
                q = softmax([(teacher[2 * iq + b][k] - centre[k]) / t_temp for k in range(3)])
                p = softmax([student[2 * v + b][k] / s_temp for k in range(3)])
                per_sample.append(-sum(q[k] * math.log(p[k]) for k in range(3)))
            terms.append(sum(per_sample) / 2)
    expected = sum(terms) / len(terms)
    assert len(terms) == 4
    new_centre = [0.9 * centre[k] + 0.1 * sum(r[k] for r in teacher) / 4 for k in range(3)]

    loss_fn = DinoLoss(3, student_temp=s_temp, center_momentum=0.9)
    loss_fn.center.copy_(torch.tensor([centre]))
    loss = loss_fn(torch.tensor(student), torch.tensor(teacher), t_temp, n_crops=3)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(loss_fn.center, torch.tensor([new_centre]))
    assert "center" in loss_fn.state_dict()


def test_sinkhorn_teacher_balances_the_prototypes() -> None:
    # a fresh head's teacher: every sample nearest the same prototype (what a centre must fix)
    g = torch.Generator().manual_seed(0)
    logits = torch.rand(12, 4, generator=g) * 0.2
    logits[:, 0] += 0.5
    q = sinkhorn_knopp(logits, temp=0.1, iterations=50)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(12))  # one assignment per sample
    torch.testing.assert_close(q.sum(dim=0), torch.full((4,), 3.0))  # 12 samples / 4 prototypes
    assert (q.argmax(dim=1) != 0).any()  # the softmax sends all 12 to prototype 0
    assert (torch.softmax(logits / 0.1, dim=1).argmax(dim=1) == 0).all()
    # the loss takes it in place of the centred softmax (DINOv2's 3 iterations)
    loss = DinoLoss(4, centering="sinkhorn")
    student = torch.randn(18, 4, generator=g)
    expected = DinoLoss(4)
    teacher = sinkhorn_knopp(logits, 0.04)
    terms = [
        -(teacher.chunk(2)[iq] * torch.log_softmax(student.chunk(3)[v] / 0.1, -1)).sum(-1).mean()
        for iq in range(2)
        for v in range(3)
        if v != iq
    ]
    assert loss(student, logits, 0.04, n_crops=3).item() == pytest.approx(
        float(sum(terms) / len(terms)), rel=1e-5
    )
    assert expected(student, logits, 0.04, n_crops=3).item() != pytest.approx(
        float(sum(terms) / len(terms)), rel=1e-3
    )
    with pytest.raises(ValueError, match="centering"):
        DinoLoss(4, centering="mean")


def _sinkhorn_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        logits = torch.rand(8, 5, generator=torch.Generator().manual_seed(1))
        q = sinkhorn_knopp(logits[rank * 4 : rank * 4 + 4], temp=0.05)
        torch.save(q, Path(out_dir) / f"q{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sinkhorn_teacher_over_two_ranks_equals_one_process(tmp_path: Path) -> None:
    mp.start_processes(
        _sinkhorn_worker,
        args=(str(tmp_path / "rdzv"), str(tmp_path)),
        nprocs=2,
        start_method="fork",
    )
    logits = torch.rand(8, 5, generator=torch.Generator().manual_seed(1))
    halves = torch.cat([torch.load(tmp_path / f"q{r}.pt") for r in range(2)])
    torch.testing.assert_close(halves, sinkhorn_knopp(logits, temp=0.05))


def test_dino_head_batchnorm_uses_batch_statistics() -> None:
    from encoderlab.objectives.dino import DinoHead, GlobalBatchNorm

    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)) * 3 + 5
    bn = GlobalBatchNorm(8)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    ref = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    torch.testing.assert_close(bn(x), ref)
    bn.eval()  # no running statistics: the teacher (always in eval) normalises its own batch
    torch.testing.assert_close(bn(x), ref)
    head = DinoHead(8, 32, hidden_dim=12, bottleneck_dim=4, nlayers=3, use_bn=True)
    assert sum(isinstance(m, GlobalBatchNorm) for m in head.modules()) == 2  # after each hidden


def test_dino_teacher_is_an_ema_of_the_student() -> None:
    obj = make("dino")
    t_qkv = obj.teacher.backbone.vit.blocks[0].attn.qkv.weight
    s_qkv = obj.encoder.vit.blocks[0].attn.qkv.weight
    assert torch.equal(t_qkv, s_qkv) and t_qkv.data_ptr() != s_qkv.data_ptr()
    assert not any(p.requires_grad for p in obj.teacher.parameters())
    obj.train()
    assert obj.encoder.training and not obj.teacher.training
    before = t_qkv.detach().clone()
    with torch.no_grad():
        s_qkv.add_(1.0)
    obj.on_step_end(0, 10)  # momentum 0.996 at the start
    torch.testing.assert_close(t_qkv, 0.996 * before + 0.004 * s_qkv)
    before = t_qkv.detach().clone()
    obj.on_step_end(5, 10)  # half way along the cosine: 1 - 0.004 * (cos(pi/2) + 1) / 2
    torch.testing.assert_close(t_qkv, 0.998 * before + 0.002 * s_qkv)
    head_w = obj.teacher.head.mlp[0].weight
    torch.testing.assert_close(head_w, obj.head.mlp[0].weight)  # untouched student == teacher
    assert obj.downstream_encoder is obj.teacher.backbone


def test_dino_schedules_and_last_layer_freeze() -> None:
    cfg = CFG.model_copy(deep=True)
    cfg.dino.freeze_last_layer_frac = 0.05
    obj = make("dino", cfg)
    opt = torch.optim.AdamW(obj.param_groups(0.123), lr=1e-3)
    groups = {g["name"]: g for g in opt.param_groups}
    obj.on_step_start(0, 100, opt)
    assert obj.teacher_temp == pytest.approx(0.04)
    assert groups["decay"]["weight_decay"] == pytest.approx(0.04)
    assert groups["no_decay"]["weight_decay"] == 0.0
    obj.on_step_start(15, 100, opt)
    assert obj.teacher_temp == pytest.approx(0.04 + 0.03 * 15 / 29)  # linspace over 30 steps
    assert groups["decay"]["weight_decay"] == pytest.approx(
        0.4 - 0.18 * (1 + math.cos(0.15 * math.pi))
    )
    obj.on_step_start(50, 100, opt)
    assert obj.teacher_temp == pytest.approx(0.07)
    assert groups["decay"]["weight_decay"] == pytest.approx(0.22)

    images, texts, ids = data(4)
    last = obj.head.last_layer.parametrizations.weight.original1  # direction (g is fixed)
    assert not obj.head.last_layer.parametrizations.weight.original0.requires_grad
    for step, frozen in ((4, True), (5, False)):
        obj.on_step_start(step, 100, opt)
        obj(obj.prepare(images, texts, ids, step))["loss"].backward()
        assert last.grad is not None
        obj.after_backward(step)
        assert (last.grad is None) == frozen
        assert obj.encoder.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
        opt.zero_grad()


def test_dino_batch_layout_and_forward() -> None:
    obj = make("dino")
    images, texts, ids = data(4)
    batch = obj.prepare(images, texts, ids, step=0)
    assert batch["global_crops"].shape == (8, 3, 32, 32)
    assert batch["local_crops"].shape == (8, 3, 16, 16)
    centre = obj.loss.center.clone()
    out = obj(batch)
    assert out["loss"].item() > 0 and out["teacher_temp"].item() == pytest.approx(0.04)
    assert not torch.equal(centre, obj.loss.center)
    assert obj.embed_text(texts) is None
    assert obj.embed_image(batch["global_crops"]).norm(dim=-1).allclose(torch.ones(8))


# -- DDP equivalence -----------------------------------------------------------------------------

DDP_NAMES = ("clip", "siglip", "dino")


def _step(obj: Objective, model: torch.nn.Module, rows: slice) -> dict[str, torch.Tensor]:
    images, texts, ids = data(8)
    batch = obj.prepare(images[rows], texts[rows], ids[rows], step=3)
    loss = model(batch)["loss"]
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in obj.named_parameters() if p.grad is not None}
    out = {"loss": loss.detach().clone(), **{f"grad.{n}": g for n, g in grads.items()}}
    if hasattr(obj.loss, "center"):
        out["center"] = obj.loss.center.clone()
    return out


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str, arch: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for name in DDP_NAMES:
            obj = make(name, arch=arch)
            model = DistributedDataParallel(obj, broadcast_buffers=False)
            out = _step(obj, model, slice(rank * 4, rank * 4 + 4))
            dist.all_reduce(out["loss"])
            out["loss"] /= world
            if rank == 0:
                torch.save(out, Path(out_dir) / f"{name}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ENCODERS))
def test_two_ranks_at_half_batch_equal_one_process(tmp_path: Path, arch: str) -> None:
    # fork: the ranks inherit the imported modules instead of re-importing torch, timm, open_clip
    args = (2, str(tmp_path / "rdzv"), str(tmp_path), arch)
    mp.start_processes(_ddp_worker, args=args, nprocs=2, start_method="fork")
    for name in DDP_NAMES:
        obj = make(name, arch=arch)
        single = _step(obj, obj, slice(0, 8))
        ddp = torch.load(tmp_path / f"{name}.pt")
        assert ddp.keys() == single.keys(), name
        for key in single:
            # atol 1e-5: BN in DINO's head amplifies float32 summation-order rounding to ~2e-6;
            # per-rank instead of global statistics would be off by ~1. The CNNs' first convs
            # sum their gradient over every pixel of the batch (oneDNN, in another order at half
            # batch): there DINO's rounding reaches ~2e-5 of the tensor's scale, so 1e-4 of it.
            atol = 1e-5 if arch == "vit" else max(1e-5, 1e-4 * float(single[key].abs().max()))
            torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=atol, msg=key)


@pytest.mark.parametrize("arch", ["convnext", "resnet", "resnet-bn"])
def test_cnn_param_groups_decay_convs_not_norms(arch: str) -> None:
    obj = make("clip", arch=arch)
    groups = {g["name"]: g for g in obj.param_groups(0.2)}
    names = {id(p): n for n, p in obj.named_parameters()}
    decay = {names[id(p)] for p in groups["decay"]["params"]}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    convs = [n for n, m in obj.encoder.net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [
        n
        for n, m in obj.encoder.net.named_modules()
        if isinstance(m, torch.nn.GroupNorm | torch.nn.LayerNorm | torch.nn.BatchNorm2d)
    ]
    assert convs and norms
    assert all(f"encoder.net.{n}.weight" in decay for n in convs)
    assert all(f"encoder.net.{n}.weight" in no_decay for n in norms)
    # batch statistics only where asked for, and then over the global batch
    batchnorms = [m for m in obj.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if arch == "resnet-bn":
        assert batchnorms and all(isinstance(m, GlobalBatchNorm2d) for m in batchnorms)
    else:
        assert not batchnorms


def test_dino_teacher_keeps_its_own_batch_statistics() -> None:
    """With BatchNorm in the backbone, DINO's teacher normalises with its own batch statistics
    (its BN layers train, nothing else does) and evaluates with its own running statistics.
    The objective is used as built, without ``train()``, as the trainer uses it: a teacher
    left in eval mode would normalise with its initial running statistics, i.e. not at all."""
    obj = make("dino", arch="resnet-bn")
    teacher_bn = [m for m in obj.teacher.backbone.modules() if isinstance(m, GlobalBatchNorm2d)]
    assert teacher_bn and all(m.training for m in teacher_bn)
    assert not obj.teacher.training and not obj.teacher.head.training
    images, texts, ids = data(4)
    batch = obj.prepare(images, texts, ids, step=0)
    with torch.no_grad():  # at step 0 the teacher is the student, batch statistics and all
        crops = batch["global_crops"]
        assert torch.equal(obj.teacher.backbone(crops), obj.encoder(crops))
    before = teacher_bn[0].running_mean.clone()
    obj(batch)
    assert not torch.equal(before, teacher_bn[0].running_mean)
    obj.eval()
    assert not any(m.training for m in teacher_bn)
    obj.train()
    assert all(m.training for m in teacher_bn) and not obj.teacher.head.training
