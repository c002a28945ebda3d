"""The ViT encoder: init determinism, feature taps, config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from encoderlab.config import parse_config
from encoderlab.encoders import EncoderConfig, VisionEncoder, build_encoder
from encoderlab.errors import ConfigError


def micro(seed: int = 0, **kw) -> VisionEncoder:
    return build_encoder(EncoderConfig(size="micro", image_size=32, patch_size=8, seed=seed, **kw))


@pytest.fixture(scope="module")
def enc() -> VisionEncoder:
    return micro().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_shapes(enc: VisionEncoder, images: torch.Tensor) -> None:
    assert enc.embed_dim == 64 and enc.num_patches == 16
    assert enc(images).shape == (3, 64)
    assert enc.forward_features(images).shape == (3, 17, 64)
    assert enc.tap(images, "cls").shape == (3, 64)
    assert enc.tap(images, "mean", layer=-2).shape == (3, 64)
    assert enc.tap(images, "patch", layer=-2).shape == (3, 16, 64)
    # DINO's local crops: a smaller input interpolates the position embedding
    assert enc(images[:, :, :16, :16]).shape == (3, 64)


def test_conv_stem_keeps_the_token_layout_and_downsamples_by_the_patch(images) -> None:
    enc = micro(stem="conv").eval()
    patchify = micro()
    assert enc.num_patches == patchify.num_patches == 16
    assert enc.forward_features(images).shape == (3, 17, 64)
    assert enc.tap(images, "patch", layer=-2).shape == (3, 16, 64)
    assert enc(images[:, :, :16, :16]).shape == (3, 64)  # DINO's local crops still work
    strides = [m.stride for m in enc.vit.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(2, 2)] * 3 + [(1, 1)]  # 3 stride-2 convs for patch 8, then a 1x1 proj
    # The stem is initialised from the seed like the rest: same seed, same weights.
    again = micro(stem="conv")
    for a, b in zip(enc.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"size": "micro", "image_size": 36, "patch_size": 6, "stem": "conv"}, "power-of-two"),
        ({"size": "vit_base_patch16_224", "stem": "conv"}, "named sizes"),
        ({"size": "micro", "stem": "convnext"}, "stem"),
    ],
)
def test_bad_stem_is_a_one_line_config_error(cfg: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        parse_config(EncoderConfig, cfg, source="preset.yaml", prefix="encoder")
    assert "\n" not in str(err.value)


def test_forward_is_cls_of_features(enc: VisionEncoder, images: torch.Tensor) -> None:
    torch.testing.assert_close(enc(images), enc.forward_features(images)[:, 0])
    torch.testing.assert_close(enc.tap(images, "cls"), enc(images))
    torch.testing.assert_close(enc.tap(images, "mean"), enc.forward_features(images)[:, 1:].mean(1))


@pytest.mark.parametrize("grad_checkpointing", [False, True])
def test_cls_only_last_block_trains_like_the_full_block(grad_checkpointing: bool) -> None:
    """forward() computes the last block for the CLS row only: same output and same gradients
    as the full timm forward, in training mode with stochastic depth drawn from the same RNG."""
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    enc = micro(drop_path=0.2, grad_checkpointing=grad_checkpointing).train()

    def run(features) -> tuple[torch.Tensor, list[torch.Tensor]]:
        enc.zero_grad()
        torch.manual_seed(3)
        out = features(images)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        return out.detach(), [p.grad.clone() for p in enc.parameters()]

    short, short_grads = run(enc)
    full, full_grads = run(lambda x: enc.forward_features(x)[:, 0])
    torch.testing.assert_close(short, full)
    assert not torch.equal(short, run(lambda x: enc(x.flip(-1)))[0])  # the images matter
    for a, b in zip(short_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_penultimate_tap_is_the_penultimate_block(enc: VisionEncoder, images: torch.Tensor):
    vit = enc.vit
    with torch.no_grad():
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(images)))
        x = vit.blocks[0](x)  # micro has 2 blocks: block 0 is the penultimate
        penult = enc.tap(images, "patch", layer=-2)
        torch.testing.assert_close(penult, x[:, 1:])
        torch.testing.assert_close(enc.tap(images, "cls", layer=0), x[:, 0])
        torch.testing.assert_close(
            enc.tap(images, "patch", layer=-2, norm=True), vit.norm(x)[:, 1:]
        )
        last = enc.tap(images, "patch", layer=-1)
    assert not torch.allclose(penult, last, atol=1e-3)
    with pytest.raises(ValueError, match="out of range"):
        enc.tap(images, "cls", layer=2)


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = micro(seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # building did not consume the global RNG
    b, c = micro(seed=7), micro(seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["vit.blocks.0.attn.qkv.weight"], sc["vit.blocks.0.attn.qkv.weight"])


def test_grad_checkpointing_gives_same_gradients(images: torch.Tensor) -> None:
    grads = []
    for ckpt in (False, True):
        e = micro(grad_checkpointing=ckpt)
        e(images).square().sum().backward()
        grads.append(e.vit.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_timm_name_size() -> None:
    e = build_encoder(EncoderConfig(size="vit_tiny_patch16_224", image_size=32, patch_size=16))
    assert e.embed_dim == 192 and e.num_patches == 4
    assert e(torch.zeros(1, 3, 32, 32)).shape == (1, 192)


@pytest.mark.parametrize("size", ["huge", "resnet18"])
def test_unknown_size_is_a_one_line_config_error(size: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(EncoderConfig, {"size": size}, "study.yaml")
    msg = str(err.value)
    assert "\n" not in msg and "study.yaml: size" in msg and size in msg
    assert "micro, mini, tiny, small" in msg


def test_patch_must_divide_image() -> None:
    with pytest.raises(ConfigError, match="not a multiple of patch_size"):
        parse_config(EncoderConfig, {"image_size": 60, "patch_size": 8})


# -- text towers -----------------------------------------------------------------------------


def test_clip_text_tower_tokenises_to_fixed_length() -> None:
    from encoderlab.encoders import ClipTextTower, TextConfig

    tower = ClipTextTower(TextConfig(width=32, layers=1, heads=2, context_length=12), 16)
    tokens = tower.tokenize(["a red square", "word " * 40])
    ids = tokens["input_ids"]
    assert ids.shape == (2, 12) and ids.dtype == torch.long
    assert ids[0, 0] == tower.tokenizer.sot_token_id and ids[1, -1] == tower.tokenizer.eot_token_id
    assert tower(tokens).shape == (2, 16)


@pytest.fixture(scope="module")
def pretrained_objective():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from encoderlab.objectives import ObjectiveConfig, build_objective

    cfg = ObjectiveConfig(clip_pretrained_text={"embed_dim": 32})
    return build_objective("clip-pretrained-text", micro(), cfg)


def test_pretrained_text_loads_minilm_offline_and_is_frozen(pretrained_objective) -> None:
    from encoderlab.encoders import default_minilm_path

    obj = pretrained_objective
    tower = obj.text
    assert tower.path == default_minilm_path() and (tower.path / "config.json").is_file()
    assert all(not p.requires_grad for p in tower.model.parameters())
    assert tower.proj.weight.requires_grad
    trainable = {id(p) for g in obj.param_groups(0.1) for p in g["params"]}
    assert id(tower.proj.weight) in trainable
    assert not any(id(p) in trainable for p in tower.model.parameters())

    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    texts = ["a red square", "a red box", "the stock market fell sharply", "two blue circles"]
    obj.train()
    assert not tower.model.training  # a frozen encoder never runs dropout
    batch = obj.prepare(images, texts, torch.arange(4), step=0)
    assert batch["text_attention_mask"].shape == (4, 32)
    obj(batch)["loss"].backward()
    assert tower.proj.weight.grad is not None and tower.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tower.model.parameters())

    # the pretrained weights are really there: paraphrases are closer than unrelated captions
    pooled = F.normalize(tower._pooled(tower.tokenize(texts)), dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2
    emb = obj.embed_text(texts)
    assert emb.shape == (4, 32)
    torch.testing.assert_close(emb, obj.embed_text(texts))  # deterministic (no dropout)


def test_pretrained_text_missing_path_is_a_config_error(tmp_path) -> None:
    from encoderlab.encoders import PretrainedTextConfig, PretrainedTextTower

    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match=str(missing)) as err:
        PretrainedTextTower(PretrainedTextConfig(path=str(missing)), 16)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not a Hugging Face text model"):
        PretrainedTextTower(PretrainedTextConfig(path=str(tmp_path)), 16)


def test_clip_text_tower_drops_padding_exactly() -> None:
    from encoderlab.encoders.text import ClipTextTower, TextConfig

    torch.manual_seed(0)
    tower = ClipTextTower(TextConfig(width=64, layers=2, heads=2, context_length=32), 32).eval()
    tokens = tower.tokenize(["a red fish", "photo of a small blue car next to a sign that says hi"])
    assert int((tokens["input_ids"] != 0).sum(1).max()) < 32  # there is padding to drop
    with torch.no_grad():
        ours = tower(tokens)
        reference = tower.transformer(tokens["input_ids"])  # OpenCLIP's own forward, full length
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_clip_text_tower_eot_row_block_gives_openclip_gradients() -> None:
    """The last block runs at each caption's EOT row only: OpenCLIP's gradients, all params."""
    from encoderlab.encoders.text import ClipTextTower, TextConfig

    torch.manual_seed(0)
    tower = ClipTextTower(TextConfig(width=64, layers=2, heads=2, context_length=32), 32).train()
    tokens = tower.tokenize(["a red fish", "a small blue car next to a sign that says hi", ""])
    weights = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))

    def grads(forward) -> list[torch.Tensor]:
        tower.zero_grad()
        (forward() * weights).sum().backward()
        return [p.grad.clone() for p in tower.parameters()]

    ours = grads(lambda: tower(tokens))
    reference = grads(lambda: tower.transformer(tokens["input_ids"]))
    for a, b in zip(ours, reference, strict=True):  # float rounding: 1e-4 of each tensor's scale
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


# -- timm CNN backbones (encoder.arch) -------------------------------------------------------

# micro CNNs: ConvNeXt (LayerNorm) and ResNet (GroupNorm in place of BatchNorm), timm-built
CNNS = {
    "convnext": {
        "arch": "convnext_atto",
        "timm_kwargs": {"dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1]},
    },
    "resnet": {
        "arch": "resnet18",
        "timm_kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 24, 32], "stem_width": 8},
    },
}


def cnn(kind: str, seed: int = 0, **kw):
    return build_encoder(EncoderConfig(**CNNS[kind], image_size=64, seed=seed, **kw))


@pytest.mark.parametrize("kind", list(CNNS))
def test_cnn_has_the_vit_interface(kind: str) -> None:
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    enc = cnn(kind).eval()
    stages = 5 if kind == "resnet" else 4  # timm's feature_info: ResNet lists its stem too
    assert enc.num_layers == stages and enc.embed_dim == 32
    with torch.no_grad():
        pooled = enc(images)
        assert pooled.shape == (3, 32)
        torch.testing.assert_close(enc.tap(images, "cls"), pooled)  # tap's default = forward
        # the VLM's grid: the penultimate stage (stride 16 at 64 px: 4 x 4 tokens of 24 channels)
        assert enc.token_layer() == stages - 2 and enc.token_grid() == (4, 4)
        assert enc.num_patches == 16 and enc.token_dim() == 24 and enc.patch_size == 16
        grid = enc.tap(images, "patch", layer=-2)
        assert grid.shape == (3, 16, 24)
        fmap = enc.net.forward_intermediates(images, indices=[stages - 2], intermediates_only=True)
        torch.testing.assert_close(grid, fmap[0].flatten(2).transpose(1, 2))  # row-major
        torch.testing.assert_close(enc.tap(images, "mean", layer=-2), grid.mean(1))
        # per-stage taps in one pass (CKA) equal the single taps
        many = enc.tap_layers(images, "mean", [0, -2, -1])
        for got, layer in zip(many, [0, -2, -1], strict=True):
            torch.testing.assert_close(got, enc.tap(images, "mean", layer=layer))
        assert enc(images[:, :, :32, :32]).shape == (3, 32)  # DINO's 32-px local crops
    with pytest.raises(ValueError, match="out of range"):
        enc.tap(images, "cls", layer=stages)
    # initialised from the seed alone, no batch statistics anywhere
    again, other = cnn(kind), cnn(kind, seed=1)
    for (name, a), b in zip(enc.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert any(
        not torch.equal(a, c)
        for a, c in zip(enc.state_dict().values(), other.state_dict().values(), strict=True)
    )
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in enc.modules())


def test_cnn_feature_stage_picks_the_vlm_grid() -> None:
    enc = cnn("convnext", feature_stage=1)
    assert enc.token_grid() == (8, 8) and enc.token_dim() == 16 and enc.num_patches == 64


@pytest.mark.parametrize(
    ("cfg", "key", "needle"),
    [
        ({"arch": "vgg16"}, "encoder.arch", "unknown encoder arch 'vgg16'"),
        ({"arch": "resnet_nope"}, "encoder.arch", "known: vit, or a timm ResNet / ConvNeXt"),
        ({"arch": "resnet18", "feature_stage": 5}, "encoder.feature_stage", "stage 5"),
        ({"arch": "convnext_atto", "feature_stage": -5}, "encoder.feature_stage", "has 4 stages"),
        ({"arch": "resnet18", "timm_kwargs": {"bogus": 1}}, "encoder.timm_kwargs", "bogus"),
        ({"timm_kwargs": {"depths": [1]}}, "encoder.timm_kwargs", "only a CNN"),
        ({"arch": "convnext_atto", "norm": "batch"}, "encoder", "for a ResNet"),
    ],
)
def test_bad_arch_or_stage_is_a_one_line_config_error(cfg: dict, key: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(EncoderConfig, cfg, source="tiny.yaml", prefix="encoder")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"tiny.yaml: {key}: ") and needle in msg


@pytest.mark.parametrize("kind", ["vit", *CNNS])
def test_vlm_tower_reads_the_documented_grid(kind: str) -> None:
    """The VLM's tokens: a ViT's patch tokens of block tap_layer ([B, (64/8)^2, 64]), a CNN's
    feature_stage grid ([B, (64/16)^2, channels]), whatever the VLM's tap_layer."""
    from encoderlab.vlm.vision import VisionTower

    if kind == "vit":
        enc = build_encoder(EncoderConfig(size="micro", image_size=64, patch_size=8))
        expected = (2, 64, 64)
    else:
        enc = cnn(kind)
        expected = (2, 16, 24)
    tower = VisionTower([enc], tap_layer=-2)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    out = tower(images)
    assert out.shape == expected and tower.dim == expected[2]
    assert tower.num_tokens == expected[1] and tower.grid**2 == expected[1]
    pooled = VisionTower([enc], tap_layer=-2, pool_tokens=4)(images)
    assert pooled.shape == (2, 4, expected[2])


# -- the world's own text tokenizer (text.tokenizer: world) --------------------------------

CAPTIONS = [
    'A red fish next to the word "SALE"',
    "photo of two blue cars and a small dog",
    "a green star, a yellow star and a red star",
    "the number 1234 on a sign",
] * 5


def test_world_tokenizer_layout_and_determinism() -> None:
    from encoderlab.encoders.text import WorldTokenizer

    tok = WorldTokenizer.train(CAPTIONS, vocab_size=160, context_length=12)
    again = WorldTokenizer.train(CAPTIONS, vocab_size=160, context_length=12)
    assert tok.to_json() == again.to_json()  # every DDP rank and a resumed run agree
    ids = tok(["a red fish", "a red star " * 20, ""])
    assert ids.shape == (3, 12) and ids.dtype == torch.long
    assert (ids[:, 0] == tok.sot_token_id).all()
    # OpenCLIP's layout: end of text is the largest id (its tower pools at the argmax) ...
    assert tok.eot_token_id == 159 and int(ids.max()) == 159
    assert (ids.argmax(1) == (ids != 0).sum(1) - 1).all()
    assert ids[1, -1] == 159 and ids[2, 1] == 159 and ids[2, 2:].eq(0).all()  # ... then zeros
    assert torch.equal(tok(["A RED FISH"]), tok(["a red fish"]))  # lower-cased, like CLIP's
    back = WorldTokenizer.from_json(tok.to_json(), 160, 12)
    assert torch.equal(back(CAPTIONS), tok(CAPTIONS))


def test_world_tokenizer_tower_is_small_and_exact() -> None:
    from encoderlab.encoders.text import ClipTextTower, TextConfig
    from encoderlab.errors import EncoderlabError

    cfg = TextConfig(width=64, layers=2, heads=2, context_length=16, tokenizer="world")
    with pytest.raises(ConfigError):  # the default vocabulary is OpenCLIP's: set a size
        parse_config(TextConfig, {"tokenizer": "openclip", "vocab_size": 1024})
    cfg = cfg.model_copy(update={"vocab_size": 200})
    torch.manual_seed(0)
    tower = ClipTextTower(cfg, 32).eval()
    assert tower.transformer.token_embedding.weight.shape == (200, 64)
    assert tower.tokenizer_captions == 20_000 and tower.tokenizer_json() is None
    with pytest.raises(EncoderlabError, match="not trained"):
        tower.tokenize(["a red fish"])
    tower.fit_tokenizer(CAPTIONS)
    tokens = tower.tokenize(["a red fish", "two blue cars next to a green star and a dog"])
    with torch.no_grad():  # row-only last block and cut padding: OpenCLIP's own forward
        torch.testing.assert_close(
            tower(tokens), tower.transformer(tokens["input_ids"]), rtol=1e-5, atol=1e-5
        )


def test_cnn_stage_features_for_cka_pad_with_zero_columns() -> None:
    """The analysis stacks per-layer features [L, N, D]: a CNN's narrower stages end in zero
    columns, which leave linear CKA as it is."""
    from encoderlab.evaluate.cka import cka_matrix
    from encoderlab.evaluate.embeddings import ImageSet, embed

    enc = cnn("convnext").eval()
    images = torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8)
    feats = embed(enc, ImageSet("cnn-cka", 12, lambda: images), layers=[0, -1], precision="fp32")
    assert feats.shape == (2, 12, 32)
    assert not feats[0, :, 8:].any()  # stage 0 has 8 channels
    assert enc.token_dim(0) == 8
    narrow = cka_matrix(feats[:1, :, :8], feats[1:])
    torch.testing.assert_close(torch.tensor(cka_matrix(feats[:1], feats[1:])), torch.tensor(narrow))


def test_a_batchnorm_encoder_has_a_cache_key_that_follows_its_weights() -> None:
    """encoder_key hashes every state tensor, BatchNorm's 0-dim ``num_batches_tracked``
    included (the control stage keyed embeddings by it and crashed on a BatchNorm ResNet)."""
    from encoderlab.evaluate.embeddings import encoder_key
    from encoderlab.vlm.checkpoint import weights_hash

    enc = cnn("resnet", norm="batch")
    assert any(t.dim() == 0 for t in enc.state_dict().values())
    key, digest = encoder_key(enc), weights_hash(enc.state_dict())
    assert encoder_key(cnn("resnet", norm="batch")) == key
    enc.train()(torch.randn(4, 3, 64, 64))  # one batch updates the running statistics
    assert encoder_key(enc) != key and weights_hash(enc.state_dict()) != digest
