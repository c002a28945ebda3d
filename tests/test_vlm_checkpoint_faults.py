"""VLM checkpoints verify themselves: a damaged file is one line on load, training again rebuilds
the checkpoint from the stages' own intact checkpoints (the same bytes), and every file is
readable per the umask (``save_pretrained`` writes 0600 weights)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.errors import EncoderlabError
from encoderlab.vlm import VLMConfig, load, train_vlm
from encoderlab.vlm.checkpoint import VLM_JSON, verify_vlm, write_encoder_run


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vlmfault")
    data = DataConfig(train=64, val=16, test=16, shard_size=64, workers=1)
    synthesize(WorldConfig(image_size=64), data, root / "data", progress=False)
    enc = write_encoder_run(EncoderConfig(size="micro", image_size=64, patch_size=16), root / "enc")
    old = os.umask(0o022)
    try:
        train_vlm([enc], root / "data", root / "vlm", VLMConfig.smoke(), root / "lm", False)
    finally:
        os.umask(old)
    return root / "vlm"


def test_every_vlm_file_is_recorded_and_readable(vlm_dir: Path) -> None:
    record = json.loads((vlm_dir / VLM_JSON).read_text())
    # the checkpoint's own files; the stages' training checkpoints beside them are not part
    own = ("encoders", "lm", "projector.safetensors", "feature_stats.safetensors")
    files = [p for p in vlm_dir.rglob("*") if p.is_file() and p.name != VLM_JSON]
    mine = [p for p in files if p.relative_to(vlm_dir).parts[0] in own]
    assert sorted(record["files"]) == sorted(p.relative_to(vlm_dir).as_posix() for p in mine)
    assert "lm/model.safetensors" in record["files"] and len(mine) < len(files)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == dict.fromkeys(modes, 0o644)
    lm_cache = next(vlm_dir.parent.glob("lm/lm-*/lm/model.safetensors"))
    assert stat.S_IMODE(lm_cache.stat().st_mode) == 0o644
    assert verify_vlm(vlm_dir) is None


@pytest.mark.parametrize("name", ["projector.safetensors", "lm/model.safetensors"])
def test_a_damaged_vlm_is_one_line_and_training_again_rebuilds_it(
    name: str, vlm_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    path = vlm_dir / name
    good = path.read_bytes()
    record = json.loads((vlm_dir / VLM_JSON).read_text())
    data = bytearray(good)
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(EncoderlabError) as err:
        load(vlm_dir)
    assert str(err.value) == f"{vlm_dir}: damaged VLM checkpoint ({name}: checksum mismatch)"
    root = vlm_dir.parent
    again = train_vlm([root / "enc"], root / "data", vlm_dir, VLMConfig.smoke(), root / "lm", False)
    assert "damaged VLM checkpoint" in capsys.readouterr().err
    assert path.read_bytes() == good  # rebuilt from the stages' checkpoints: the same bytes
    assert again["checkpoint_hash"] == record["checkpoint_hash"]
    assert verify_vlm(vlm_dir) is None
    load(vlm_dir)
