"""Embedding analysis on encoders with known invariances (encoderlab.evaluate)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

import encoderlab.cli.analyze  # noqa: F401  (registers the command)
from encoderlab.cli import main
from encoderlab.data.augment import CLIP_MEAN, CLIP_STD
from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig, build_encoder
from encoderlab.errors import DataError, EncoderlabError
from encoderlab.evaluate.analyze import AnalysisConfig, CKAConfig, analyze, encoder_pairs
from encoderlab.evaluate.attributes import ProbeConfig
from encoderlab.evaluate.cka import cka_matrix, linear_cka
from encoderlab.evaluate.embeddings import ImageSet, embed, encoder_key
from encoderlab.evaluate.external import load_external
from encoderlab.evaluate.imagesets import load_labelled
from encoderlab.evaluate.pairs import PairConfig, mine_pairs
from encoderlab.evaluate.sensitivity import build_counterfactual_set, random_partners
from encoderlab.files import save_weights, write_json

WORLD = WorldConfig(image_size=32, seed=3)
FACTORS = ["text", "colour", "category", "background"]
FAST_PROBES = ProbeConfig(weight_decays=(0.0,), max_iter=50)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Undo the CLIP normalisation exactly (the study's preprocessing of uint8 images)."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return ((x.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


class ColourHistogram(nn.Module):
    """Sees colours only: a 4x4x4 RGB histogram (square-rooted) of the whole image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = _to_uint8(x).long() // 64
        idx = (q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]).flatten(1)
        ones = torch.ones_like(idx, dtype=torch.float32)
        return torch.zeros(len(x), 64).scatter_add_(1, idx, ones).sqrt()


class WordOracle:
    """Sees the embedded word only: reads it from the scene metadata of the rendered image
    (looked up by the image's bytes) and embeds its identity as a fixed random vector."""

    def __init__(self, images: torch.Tensor, words: list[str | None], dim: int = 32):
        self.table = {self._key(im): w for im, w in zip(images, words, strict=True)}
        self.dim = dim

    @staticmethod
    def _key(image: torch.Tensor) -> str:
        return hashlib.sha1(image.numpy().tobytes()).hexdigest()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        vecs = []
        for image in _to_uint8(x):
            word = self.table[self._key(image)]
            seed = int.from_bytes(hashlib.sha1(str(word).encode()).digest()[:4], "little")
            vecs.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(vecs)


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    cset = build_counterfactual_set(WORLD, 120, FACTORS, workers=1)
    images = cset.images.tensor()
    oracle = WordOracle(images, [s.text.content for s in cset.all_scenes])
    out = tmp_path_factory.mktemp("analysis")
    cfg = AnalysisConfig(
        scenes=120, factors=FACTORS, n_boot=300, workers=1, probes=FAST_PROBES,
        cka=CKAConfig(images=60), pairs=PairConfig(random_pairs=2000, grid_pairs=3),
    )  # fmt: skip
    result = analyze(
        {"hist": ColourHistogram(), "oracle": oracle}, out, cfg, world=WORLD, progress=False
    )
    return result, out


def test_colour_histogram_is_colour_sensitive_and_word_oracle_text_sensitive(constructed):
    result, _ = constructed
    sens = result["sensitivity"]["encoders"]
    hist = {f: v["value"] for f, v in sens["hist"]["factors"].items()}
    oracle = {f: v["value"] for f, v in sens["oracle"]["factors"].items()}
    assert hist["colour"] > 0.15 and hist["colour"] > 5 * hist["text"]
    assert hist["background"] > hist["text"]
    # The oracle moves only when the word changes: by about a random pair's distance or more.
    assert oracle["text"] > 0.9
    for factor in ("colour", "category", "background"):
        assert abs(oracle[factor]) < 1e-6
    # CIs bracket the estimates; the text factor uses only scenes with text.
    for v in sens["hist"]["factors"].values():
        assert v["low"] <= v["value"] <= v["high"]
    n_text = sens["hist"]["factors"]["text"]["n"]
    assert 0 < n_text < 120 and sens["hist"]["factors"]["colour"]["n"] == 120
    (comp,) = result["sensitivity"]["comparisons"]
    assert (comp["a"], comp["b"]) == ("hist", "oracle")
    assert comp["factors"]["colour"]["significant"] and comp["factors"]["colour"]["value"] > 0
    assert comp["factors"]["text"]["significant"] and comp["factors"]["text"]["value"] < 0


def test_probes_pairs_cka_and_report_files(constructed):
    result, out = constructed
    probes = result["probes"]
    colour = probes["hist"]["colour"]
    assert colour["accuracy"] > colour["chance"] + 0.1
    assert probes["oracle"]["colour"]["accuracy"] < colour["accuracy"] - 0.1
    (pairs,) = result["pairs"]
    assert {d["high"] for d in pairs["directions"]} == {"hist", "oracle"}
    for d in pairs["directions"]:
        assert d["thresholds"]["mode"] in ("absolute", "quantile")
    # Pairs the oracle finds similar but the histogram does not share their word (or lack of
    # one) far more often than random pairs do.
    high_oracle = next(d for d in pairs["directions"] if d["high"] == "oracle")
    shared = high_oracle["shared"]["text_present"]
    assert shared["mined"] > shared["base"]
    cka = np.array(result["cka"]["final_layer"]["matrix"])
    assert np.allclose(np.diag(cka), 1.0) and cka[0, 1] < 0.9
    for name in ("analysis.json", "sensitivity.md", "sensitivity.png", "probes.png"):
        assert (out / name).is_file(), name
    assert len(list(out.glob("pairs_high_*.png"))) == 2
    md = (out / "sensitivity.md").read_text()
    assert "## hist vs oracle" in md and "| colour |" in md
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["sensitivity"]["encoders"]["hist"]["factors"]["colour"]["value"] == pytest.approx(
        result["sensitivity"]["encoders"]["hist"]["factors"]["colour"]["value"]
    )


def test_cka_rotation_invariance_and_random_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 48))  # low-rank, structured
    q, _ = np.linalg.qr(rng.normal(size=(48, 48)))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, rng.normal(size=(300, 48))) < 0.2
    # More features than samples (the Gram form) gives the textbook value.
    wide = rng.normal(size=(20, 64))
    other = wide @ rng.normal(size=(64, 10)) + rng.normal(size=(20, 10))
    k, m = (
        (lambda z: (z - z.mean(0)) @ (z - z.mean(0)).T)(wide),
        (lambda z: (z - z.mean(0)) @ (z - z.mean(0)).T)(other),
    )
    expected = np.sum(k * m) / (np.linalg.norm(k) * np.linalg.norm(m))
    assert linear_cka(wide, other) == pytest.approx(expected, rel=1e-9)
    # A real encoder vs an orthogonally rotated copy of its features, layer by layer.
    enc = build_encoder(EncoderConfig(size="micro", image_size=32, patch_size=4, seed=1))
    images = ImageSet("rand", 64, lambda: torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0)))  # fmt: skip
    layers = embed(enc, images, layers=[0, 1])
    rot, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    mat = cka_matrix(layers, layers @ rot)
    assert np.allclose(np.diag(mat), 1.0, atol=1e-9)
    assert mat.shape == (2, 2)


def test_pair_mining_finds_what_each_encoder_follows():
    rng = np.random.default_rng(0)
    n = 400
    colour = rng.integers(0, 4, n)
    category = rng.integers(0, 4, n)
    protos_a, protos_b = rng.normal(size=(4, 32)), rng.normal(size=(4, 32))
    emb_a = protos_a[colour] + 0.3 * rng.normal(size=(n, 32))  # A follows colour
    emb_b = protos_b[category] + 0.3 * rng.normal(size=(n, 32))  # B follows category
    labels = {"colour": colour.tolist(), "category": category.tolist()}
    report = mine_pairs("A", emb_a, "B", emb_b, labels, PairConfig(random_pairs=5000))
    high_a, high_b = report.directions
    assert high_a.mode == high_b.mode == "absolute" and len(high_a.pairs) and len(high_b.pairs)
    assert high_a.shared["colour"]["mined"] > 0.95 and high_a.shared["colour"]["lift"] > 3
    assert high_a.shared["category"]["mined"] < 0.05
    assert high_b.shared["category"]["mined"] > 0.95 and high_b.shared["colour"]["mined"] < 0.05
    # Encoders whose similarities never pass the paper's thresholds: quantile fallback.
    flat_a = rng.normal(size=(n, 64))
    flat_b = rng.normal(size=(n, 64))
    report = mine_pairs("A", flat_a, "B", flat_b, labels, PairConfig(random_pairs=5000))
    for d in report.directions:
        assert d.mode == "quantile" and len(d.pairs) > 0
        assert d.threshold_high < 0.7
    # Encoders that nearly agree: no pair is high for one and median-low for the other, so
    # the pairs with the largest quantile gap are reported instead.
    close_b = flat_a + 0.05 * rng.normal(size=(n, 64))
    report = mine_pairs("A", flat_a, "B", close_b, labels, PairConfig(random_pairs=5000))
    for d in report.directions:
        assert d.mode == "rank" and 0 < len(d.pairs) <= 50


def test_embedding_cache_and_determinism(tmp_path):
    enc = build_encoder(EncoderConfig(size="micro", image_size=32, patch_size=4, seed=0))
    calls = []
    cset = build_counterfactual_set(WORLD, 10, ["colour"], workers=1)
    original_load = cset.images._load_all
    cset.images._load_all = lambda: calls.append(1) or original_load()
    first = embed(enc, cset.images, cache_dir=tmp_path, batch_size=7)
    again = build_counterfactual_set(WORLD, 10, ["colour"], workers=1)
    again.images._load_all = lambda: calls.append(1) or original_load()
    cached = embed(enc, again.images, cache_dir=tmp_path)
    assert calls == [1]  # the second run neither rendered nor ran the encoder
    assert np.array_equal(first, cached)
    assert np.array_equal(first, embed(enc, again.images, batch_size=7))  # recomputed: same
    other = build_encoder(EncoderConfig(size="micro", image_size=32, patch_size=4, seed=1))
    assert encoder_key(other) != encoder_key(enc)
    assert not np.array_equal(embed(other, again.images, cache_dir=tmp_path), first)
    partners = random_partners(50, 4, seed=0)
    assert (partners != np.arange(50)[:, None]).all()
    assert encoder_pairs(["dino", "clip", "siglip"]) == [
        ("clip", "dino"), ("siglip", "dino"), ("clip", "siglip"),
    ]  # fmt: skip


def test_analysis_of_vits_is_byte_identical_across_runs(tmp_path):
    encoders = {
        f"vit{s}": build_encoder(EncoderConfig(size="micro", image_size=32, patch_size=4, seed=s))
        for s in (0, 1)
    }
    cfg = AnalysisConfig(
        scenes=24, factors=["colour", "text"], n_boot=100, workers=1, probes=FAST_PROBES,
        pairs=PairConfig(random_pairs=200, grid_pairs=2), attributes=["colour", "style"],
    )  # fmt: skip
    first = analyze(encoders, tmp_path / "a", cfg, world=WORLD, progress=False)
    analyze(encoders, tmp_path / "b", cfg, world=WORLD, cache_dir=tmp_path / "c", progress=False)
    for name in ("analysis.json", "sensitivity.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    (layerwise,) = first["cka"]["layerwise"]
    assert np.array(layerwise["matrix"]).shape == (2, 2)  # micro ViTs have 2 blocks


def test_external_timm_and_open_clip_from_local_files(tmp_path):
    import open_clip
    import timm

    # timm's own small test ViT (160 px, 6 blocks) keeps this fast; any timm name works alike.
    model = timm.create_model("test_vit", pretrained=False, num_classes=0).eval()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors"
    )
    enc = load_external(f"timm:test_vit={tmp_path / 'w.safetensors'}")
    images = ImageSet("ext", 2, lambda: torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    # Exactness against timm's fp32 forward needs fp32: ``auto`` is bf16 on CPUs that have it.
    out = embed(enc, images, precision="fp32")
    x = enc.preprocess(images.tensor())
    assert x.shape[-1] == 160
    with torch.no_grad():
        reference = model(x).numpy()
    assert np.allclose(out, reference, atol=1e-5)
    # bf16 keeps 8 mantissa bits (~0.4% per rounding); through 6 blocks the embedding may move a
    # few percent of its norm, not more.
    out_bf16 = embed(enc, images, precision="bf16")
    assert np.linalg.norm(out_bf16 - reference) / np.linalg.norm(reference) < 0.05
    assert embed(enc, images, layers=[0, -1]).shape == (2, 2, model.embed_dim)

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1},
    }
    (tmp_path / "TinyTestCLIP.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "TinyTestCLIP.json")
    clip = open_clip.create_model("TinyTestCLIP", pretrained=None).eval()
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    enc = load_external(f"open_clip:TinyTestCLIP={tmp_path / 'clip.pt'}")
    with torch.no_grad():
        expected = clip.encode_image(enc.preprocess(images.tensor())).numpy()
    assert np.allclose(embed(enc, images, precision="fp32"), expected, atol=1e-5)
    assert embed(enc, images, layers=[0, 1], kind="mean").shape == (2, 2, 64)

    with pytest.raises(EncoderlabError, match="unknown encoder kind 'onnx'"):
        load_external(f"onnx:model={tmp_path / 'clip.pt'}")
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(EncoderlabError, match=r"junk\.safetensors: unreadable weights file"):
        load_external(f"timm:test_vit={tmp_path / 'junk.safetensors'}")
    with pytest.raises(EncoderlabError, match="not a resnet18 checkpoint"):
        load_external(f"timm:resnet18={tmp_path / 'w.safetensors'}")


def _image_folder(tmp_path, n=24):
    rng = np.random.default_rng(0)
    rows = ["image,colour,shape"]
    for i in range(n):
        colour = ["red", "blue"][i % 2]
        rgb = (200, 30, 30) if colour == "red" else (30, 30, 200)
        arr = np.clip(np.array(rgb) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,{colour},{['disc', 'box', 'bar'][i % 3]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def _run_dir(path, objective, seed):
    cfg = EncoderConfig(size="micro", image_size=32, patch_size=4, seed=seed)
    path.mkdir(parents=True)
    save_weights(build_encoder(cfg).state_dict(), path / "encoder.safetensors")
    write_json(cfg.model_dump(mode="json"), path / "encoder.json")
    write_json({"objective": objective, "data": {}}, path / "config.json")
    return path


def test_cli_on_image_folder_with_run_dirs(tmp_path, capsys):
    csv = _image_folder(tmp_path)
    clip = _run_dir(tmp_path / "runs" / "clip", "clip", 0)
    dino = _run_dir(tmp_path / "runs" / "dino", "dino", 1)
    out = tmp_path / "out"
    argv = ["analyze", str(dino), str(clip), "--out", str(out), "--data", str(csv),
            "--attributes", "colour", "--quiet"]  # fmt: skip
    main(argv)
    result = json.loads((out / "analysis.json").read_text())
    assert "skipped" in result["sensitivity"]  # an image folder has no counterfactuals
    assert result["data"]["images"] == 24 and result["data"]["attributes"] == ["colour"]
    assert set(result["probes"]) == {"dino", "clip"}
    assert result["pairs"][0]["a"] == "clip"  # DINO is always side B, as in the paper
    assert (out / "cka_layers.png").is_file() and (out / "cka_final.png").is_file()
    assert any(out.joinpath("cache").rglob("*.npy"))


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    csv = _image_folder(tmp_path, n=4)
    with pytest.raises(
        DataError, match=r"labels\.csv: no column 'size' \(available: colour, shape\)"
    ):
        load_labelled(csv, 32, attributes=["size"])
    bad = tmp_path / "bad.csv"
    bad.write_text("image,colour\nim0.png,red\nmissing.png,blue\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 3: image 'missing\.png' not found"):
        load_labelled(bad, 32)
    run = _run_dir(tmp_path / "run", "clip", 0)
    for argv, expected in (
        (["analyze", str(run), "--out", str(tmp_path / "o"), "--data", str(csv), "--attributes", "size"], "no column 'size'"),
        (["analyze", f"onnx:m={csv}", "--out", str(tmp_path / "o")], "unknown encoder kind 'onnx'"),
        (["analyze", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], "nowhere: run directory not found"),
        (["analyze", str(tmp_path / "im0.png"), "--out", str(tmp_path / "o")], "a weights file needs its kind"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err and "Traceback" not in err


def test_a_study_data_stage_directory_reads_as_its_data_set(tmp_path):
    """`--data runs/S/data` (a study's data stage, the data set under shards/) means the same
    data as `runs/S/data/shards`: same images and labels, and its world (so the sensitivity
    analysis runs) instead of an unlabelled folder of every split."""
    small = DataConfig(train=8, val=8, test=16, shard_size=64, workers=1)
    synthesize(WORLD, small, tmp_path / "data" / "shards", progress=False)
    stage = load_labelled(tmp_path / "data", 32, attributes=["category"])
    root = load_labelled(tmp_path / "data" / "shards", 32, attributes=["category"])
    assert len(stage.images) == len(root.images) == 16  # the test split only
    assert stage.labels == root.labels and stage.world == root.world == WORLD
