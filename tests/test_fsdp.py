"""FSDP2 (``TrainConfig.sharding: fsdp``) on two gloo ranks: VLM stage 2 on a micro random-init
Hugging Face LM follows DDP's losses and weights, resumes exactly, and writes checkpoints that a
single process loads."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

import encoderlab.train.trainer as trainer_module
from encoderlab.train import sharding
from encoderlab.train.checkpoint import latest_checkpoint, load_checkpoint
from encoderlab.train.config import TrainConfig
from encoderlab.train.distributed import DistInfo
from encoderlab.train.sharding import shard_plan
from encoderlab.train.trainer import Trainer, build_optimizer
from encoderlab.vlm.data import ExampleDataset, PadCollate
from encoderlab.vlm.lm import load_lm
from encoderlab.vlm.model import model_for_features
from encoderlab.vlm.random_lm import write_random_lm
from encoderlab.vlm.tasks import VLMStageTask
from encoderlab.vlm.template import Template

TOKENS, DIM, N = 4, 16, 16
ANSWERS = ["red", "blue", "green", "yes", "no", "3", "a cat", "left"]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_lm(tmp_path_factory.mktemp("lm") / "qwen2", "qwen2", "micro")


def _task(lm_dir: Path) -> tuple[VLMStageTask, ExampleDataset, PadCollate]:
    lm, tok = load_lm(lm_dir)
    template = Template(tok, TOKENS, 64, style="vicuna_v1")
    examples = [template.conversation([("What colour is it?", ANSWERS[i % 8])]) for i in range(N)]
    features = torch.randn(N, TOKENS, DIM, generator=torch.Generator().manual_seed(0))
    model = model_for_features(DIM, 1, lm, tok, seed=0)
    return (
        VLMStageTask(model, features, 2),
        ExampleDataset(examples, list(range(N))),
        PadCollate(int(tok.pad_token_id)),
    )


def _cfg(sharding: str, checkpointing: bool = False) -> TrainConfig:
    return TrainConfig(
        batch_size=4,
        samples=16,  # 4 steps
        lr=1e-2,
        warmup_frac=0.0,
        precision="fp32",
        log_every=1,
        checkpoint_every=2,
        sharding=sharding,  # type: ignore[arg-type]
        gradient_checkpointing=checkpointing,
    )


def _worker(rank: int, init: str, lm_dir: Path, out: Path) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.set_num_threads(1)
    replicas = []

    def spy(task, device, bf16):  # the fsdp runs really train a sharded replica
        replicas.append(sharding.fsdp_replica(task, device, bf16))
        return replicas[-1]

    trainer_module.fsdp_replica = spy  # a forked process of its own: nothing to restore
    try:
        info = DistInfo(rank, 2)
        runs = {
            "ddp": (_cfg("ddp"), None),
            "fsdp": (_cfg("fsdp", checkpointing=True), None),
            "resumed": (_cfg("fsdp"), 2),  # stopped after step 2, then resumed
        }
        for name, (cfg, stop) in runs.items():
            task, data, collate = _task(lm_dir)
            if stop is not None:
                Trainer(task, data, collate, cfg, out / name, info, progress=False).fit(stop)
                task, data, collate = _task(lm_dir)
            Trainer(task, data, collate, cfg, out / name, info, progress=False).fit()
            assert not task.model.lm.is_gradient_checkpointing  # turned off after training
            if name != "ddp":
                replica = replicas[-1]
                assert isinstance(replica, FSDPModule)
                weight = replica.model.lm.model.layers[0].mlp.up_proj.weight
                assert isinstance(weight, DTensor)  # 1/2 of the rows on each rank
                assert weight.to_local().shape[0] == weight.shape[0] // 2
            else:
                assert not replicas
            if rank == 0:  # the task holds the trained weights again, plain tensors
                torch.save(task.model.state_dict(), out / f"{name}.pt")
    finally:
        dist.destroy_process_group()


def _losses(run: Path) -> torch.Tensor:
    rows = (run / "metrics.jsonl").read_text().splitlines()
    return torch.tensor([json.loads(r)["loss"] for r in rows])


def test_fsdp_matches_ddp_resumes_and_loads_in_one_process(lm_dir: Path, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    init = f"file://{tmp_path / 'pg'}"
    procs = [ctx.Process(target=_worker, args=(r, init, lm_dir, tmp_path)) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    ddp = _losses(tmp_path / "ddp")
    assert len(ddp) == 4 and ddp[-1] < ddp[0]  # it trains
    for name in ("fsdp", "resumed"):
        torch.testing.assert_close(_losses(tmp_path / name), ddp, rtol=1e-4, atol=1e-5)
        got, want = (torch.load(tmp_path / f"{n}.pt") for n in (name, "ddp"))
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-3, atol=1e-5, msg=key)
    # the FSDP checkpoint is the one-process format: a plain task and AdamW load it strictly
    task, _, _ = _task(lm_dir)
    optimizer = build_optimizer(task, _cfg("ddp"))
    ckpt = latest_checkpoint(tmp_path / "fsdp" / "checkpoints")
    assert ckpt is not None and load_checkpoint(ckpt, task, optimizer)["step"] == 4
    trained = torch.load(tmp_path / "fsdp.pt")
    for key, value in task.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert len(optimizer.state) == sum(1 for p in task.parameters() if p.requires_grad)


def test_shard_plan_is_each_decoder_layer_then_the_whole(lm_dir: Path) -> None:
    task, _, _ = _task(lm_dir)
    layers = len(task.model.lm.model.layers)
    assert shard_plan(task) == [f"model.lm.model.layers.{i}" for i in range(layers)] + [""]


def test_world_images_are_references_decoded_where_encoded(tmp_path: Path) -> None:
    """read_world keeps shard references, not decoded images: the same images (unreadable
    samples skipped as before) and the same features as the eagerly decoded list."""
    from encoderlab.data.reader import SampleDataset, index_source
    from encoderlab.encoders.vit import EncoderConfig
    from encoderlab.train.pretrain import load_encoder
    from encoderlab.vlm.checkpoint import write_encoder_run
    from encoderlab.vlm.data import ShardImages, read_world
    from encoderlab.vlm.pipeline import shared_features
    from encoderlab.vlm.vision import VisionTower, encode_images
    from test_distributed import colour, write_shard

    data = write_shard(tmp_path / "d" / "train-0.tar", {2})
    world = read_world(data, 6, image_size=32)
    assert isinstance(world.images, ShardImages) and world.texts == ["0", "1", "3", "4", "5", "6"]
    assert world.images.indices == [0, 1, 3, 4, 5, 6]  # references, nothing decoded held
    before = [  # what read_world held before: every image decoded
        item["image"]
        for item in (SampleDataset(index_source(data)[0], 32)[i] for i in range(7))
        if "skip" not in item
    ]
    assert all(torch.equal(a, b) for a, b in zip(world.images, before, strict=True))
    assert tuple(world.images[2][:, 0, 0].tolist()) == colour(3)
    assert len(world.images[:4]) == 4 and isinstance(world.images[:4], ShardImages)
    run = write_encoder_run(
        EncoderConfig(size="micro", image_size=32, patch_size=8), tmp_path / "e"
    )
    tower = VisionTower([load_encoder(run)], -2)
    want = encode_images(tower, before, batch_size=4, progress=False)
    got = shared_features(tower, world.images, tmp_path / "f.npy", DistInfo(), False, batch_size=4)
    assert torch.equal(got, want)  # bitwise: the same pixels in the same batches
