"""The lmms-eval adapter inside the real lmms-eval (the ``lmms`` extra; ``make test`` installs it).

Real clip-art (the fixture PNGs) -> ``encoderlab data import`` -> ``encoderlab data
vmcbench-tsv`` -> a local lmms-eval task over that TSV (YAML + utils in a temporary folder, read
with ``TaskManager(include_path=...)``) -> lmms-eval's own evaluator, ``simple_evaluate(model=
"encoderlab", ...)``, which finds the adapter through the ``lmms_eval.models`` entry point, scores
a micro VLM; ``encoderlab eval --scoring letter`` scores the same VLM on the same TSV. Every
item's correctness, every option's loss and the accuracy must agree. A ``generate_until`` task
on the same items checks the generation path against the VLM's own greedy answers (a smoke
check: the micro VLM ends its answers at once, so they are empty strings).

lmms-eval runs in a subprocess: its evaluator seeds the global RNGs and patches ``filelock`` and
``ssl`` process-wide, which must not leak into other tests. Nothing is downloaded: the hub is
offline and the data sets' cache lives in the test's folder.

Without lmms-eval the test skips, unless ``ENCODERLAB_REQUIRE_LMMS=1`` (``make test`` sets it,
after installing the extra), where a missing lmms-eval fails it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from encoderlab.cli import main
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.suite.formats import images_to_tensor, load_table
from encoderlab.suite.questions import mc_prompt
from encoderlab.vlm import VLMConfig, load, train_vlm
from encoderlab.vlm.checkpoint import write_encoder_run

FIXTURES = Path(__file__).parent / "fixtures"
REQUIRE_ENV = "ENCODERLAB_REQUIRE_LMMS"
MC_TASK, GEN_TASK = "encoderlab_clipart_mc", "encoderlab_clipart_gen"
MAX_NEW_TOKENS = 4

# What a researcher writes for a VMCBench TSV: the columns of tests/fixtures/lmms_task/utils.py
# (question, A-D, answer, image as base64), read by the datasets "csv" builder.
TASK_HEAD = """\
task: {task}
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {tsv}
  sep: "\\t"
  keep_default_na: false
  cache_dir: {cache}
test_split: test
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    post_prompt: "\\nAnswer with the option's letter from the given choices directly."
"""
MC_TAIL = """\
output_type: multiple_choice
doc_to_choice: !function utils.doc_to_choice
doc_to_target: !function utils.doc_to_target_index
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
GEN_TAIL = f"""\
output_type: generate_until
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {MAX_NEW_TOKENS}
  until: ["\\n"]
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
"""

# Run by the subprocess: lmms-eval's evaluator on the local tasks only (include_defaults=False
# skips indexing its hundreds of built-in task YAMLs, seconds of CPU that test nothing here).
RUNNER = """\
import json, sys
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager
task_dir, ckpt, out, *tasks = sys.argv[1:]
res = simple_evaluate(
    model="encoderlab", model_args=f"pretrained={ckpt}", tasks=tasks, batch_size=8,
    task_manager=TaskManager(include_path=task_dir, include_defaults=False),
    bootstrap_iters=0, log_samples=True,
)
keep = ("doc_id", "target", "acc", "accuracy", "filtered_resps")
json.dump({
    "model": res["config"]["model"],
    "results": res["results"],
    "samples": {t: [{k: s[k] for k in keep if k in s} for s in res["samples"][t]] for t in tasks},
}, open(out, "w"), default=str)
"""


def _lmms_eval_or_skip() -> None:
    if importlib.util.find_spec("lmms_eval") is not None:
        return
    hint = "install the lmms extra: pip install -e '.[dev,lmms]' (make test does)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"lmms-eval is not installed but {REQUIRE_ENV}=1; {hint}")
    pytest.skip(f"lmms-eval is not installed; {hint}")


def _write_task(root: Path, tsv: Path) -> Path:
    tasks = root / "tasks"
    tasks.mkdir()
    shutil.copy(FIXTURES / "lmms_task" / "utils.py", tasks / "utils.py")
    for name, tail in ((MC_TASK, MC_TAIL), (GEN_TASK, GEN_TAIL)):
        head = TASK_HEAD.format(task=name, tsv=tsv, cache=root / "datasets-cache")
        (tasks / f"{name}.yaml").write_text(head + tail)
    return tasks


def _run_lmms_eval(tasks: Path, vlm: Path, root: Path) -> dict:
    out = root / "lmms.json"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / "hf-home"),
        "WANDB_MODE": "disabled",
    }
    cmd = [sys.executable, "-c", RUNNER, str(tasks), str(vlm), str(out), MC_TASK, GEN_TASK]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


def _harness(out: Path) -> tuple[dict[str, float], dict[str, list[float]], float]:
    """``encoderlab eval``'s per-item scores, per-item option scores and accuracy."""
    rows = list(csv.DictReader((out / "per_item.csv").open()))
    per_item = {r["unit"]: float(r["score"]) for r in rows}
    (bench,) = {r["benchmark"] for r in rows}
    (preds,) = (out / "predictions").glob("*.jsonl")
    scores = {}
    for line in preds.read_text().splitlines():
        rec = json.loads(line)
        scores[rec["key"].split(":")[0]] = rec["scores"]
    results = json.loads((out / "results.json").read_text())
    return per_item, scores, results["benchmarks"][bench]["score"]


@pytest.mark.any_cpu_kind
def test_lmms_eval_scores_equal_encoderlab_eval(tmp_path: Path) -> None:
    _lmms_eval_or_skip()
    data, tsv = tmp_path / "clipart", tmp_path / "clipart.tsv"
    main(["data", "import", str(FIXTURES / "clipart"), "--out", str(data), "--image-size", "64",
          "--workers", "1", "--quiet"])  # fmt: skip
    main(["data", "vmcbench-tsv", str(data), "--split", "train", "--out", str(tsv)])
    items = load_table(tsv)
    assert len(items) == 16  # the train split: more items than the 4 of the test split
    enc = write_encoder_run(EncoderConfig(size="micro", image_size=64, patch_size=16), tmp_path / "enc")  # fmt: skip
    recipe = VLMConfig.smoke()
    train_vlm([enc], data / "llava-train.json", tmp_path / "vlm", recipe, tmp_path / "lm", False)

    main(["eval", str(tmp_path / "vlm"), "--suite", str(tsv), "--scoring", "letter",
          "--preset", "smoke", "--out", str(tmp_path / "eval"), "--quiet"])  # fmt: skip
    per_item, scores, accuracy = _harness(tmp_path / "eval")

    got = _run_lmms_eval(_write_task(tmp_path, tsv), tmp_path / "vlm", tmp_path)
    assert got["model"] == "encoderlab"  # resolved through the entry point
    mc = got["samples"][MC_TASK]
    assert sorted(int(s["doc_id"]) for s in mc) == list(range(len(items)))
    for sample in mc:
        item = items[int(sample["doc_id"])]  # the csv builder keeps the TSV's row order
        assert int(sample["target"]) == item.answer_index
        assert float(sample["acc"]) == per_item[item.index], item.index
        losses = [float(loss) for loss, _ in sample["filtered_resps"]]
        assert losses == pytest.approx([-s for s in scores[item.index]], abs=2e-5), item.index
    assert got["results"][MC_TASK]["acc,none"] == pytest.approx(accuracy, abs=1e-9)

    # generate_until: the adapter's answers are the VLM's greedy answers, cut at the "until"
    # (the path runs and returns text; the smoke VLM's answers are "")
    vlm = load(tmp_path / "vlm")
    prompts = [mc_prompt(it.question, it.options) for it in items]
    with torch.no_grad():
        answers = vlm.generate(images_to_tensor(items, vlm.image_size), prompts, MAX_NEW_TOKENS)
    gen = {int(s["doc_id"]): s["filtered_resps"][0] for s in got["samples"][GEN_TASK]}
    assert gen == {i: a.split("\n")[0].strip() for i, a in enumerate(answers)}
