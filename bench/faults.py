"""Fault injection: kill -9, damaged data and checkpoints, a full disk, malformed inputs.

Each fault kind is injected ``--trials`` times at random points (seeded) into the real
commands (``encoderlab pretrain``, ``vlm train``, ``study run``, ``study plan``, ``data stats``,
``eval``) on the smoke preset at micro sizes, and every outcome is classified:

    resumed bitwise-equal   the same command, run again, ends with the same bytes as a run that
                            was never interrupted
    one-line error          exit status 2, one ``error:`` line, no traceback, nothing lost
    skipped and counted     the command finished and its record counts the damaged samples
    accepted                a mutated input that is still valid ran normally

A trial survives when it ends in one of these. "Data lost" counts trials where something that
was intact before the fault (a finished checkpoint, a sample) is gone, changed or silently
dropped; it must be 0. Commands run in forked children of this process (torch is imported once,
so a trial costs its work, not an interpreter start), one thread each, and are killed with
SIGKILL, exactly as ``kill -9`` does.

    .venv/bin/python bench/faults.py --trials 20            # every kind, 20 times each
    .venv/bin/python bench/faults.py --trials 2 --kinds kill-pretrain,full-disk
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import shutil
import signal
import sys
import tarfile
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml
from PIL import Image

torch.set_num_threads(1)  # before any op: forked children never inherit an OpenMP pool
torch.set_num_interop_threads(1)

from encoderlab.config import load_preset  # noqa: E402
from encoderlab.data.synth import DataConfig, synthesize  # noqa: E402
from encoderlab.data.synthworld import WorldConfig  # noqa: E402
from encoderlab.train.checkpoint import checkpoint_dirs, verify_checkpoint  # noqa: E402

BATCH = 16
TRAIN = 192  # 12 steps of 16: one epoch, so every sample is met once
SHARD = 64
OUTCOMES = ("resumed bitwise-equal", "one-line error", "skipped and counted", "accepted")


# -- running a command in a forked child ------------------------------------------------------
@dataclass
class Run:
    rc: int | None  # exit status, None when killed
    killed: bool
    stderr: str
    seconds: float

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr

    @property
    def one_line_error(self) -> bool:
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.startswith("error:")]
        return self.rc == 2 and len(lines) == 1 and not self.traceback


def run_command(
    argv: list[str],
    log: Path,
    hook: Callable[[], None] | None = None,
    kill_after: float | None = None,
) -> Run:
    """``encoderlab ARGV`` in a forked child (stdout and stderr to ``log``); ``hook`` runs in the
    child first (fault injection); the child is SIGKILLed after ``kill_after`` seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if hook is not None:
                hook()
            from encoderlab.cli import main

            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if kill_after is not None and time.perf_counter() - start >= kill_after:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            killed = True
            break
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        rc, killed = None, True
    else:
        rc = os.WEXITSTATUS(status)
    return Run(rc, killed, log.read_text(errors="replace"), time.perf_counter() - start)


def _suicide_on(module: str, name: str, when: Callable[..., bool], after: bool = True) -> None:
    """In a child: make ``module.name`` SIGKILL the process (before or after the real call)
    on the call for which ``when(*args)`` is true."""
    import importlib

    mod = importlib.import_module(module)
    real = getattr(mod, name)

    def patched(*args: Any, **kwargs: Any) -> Any:
        hit = when(*args)
        if hit and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(mod, name, patched)


def _nth(n: int, predicate: Callable[..., bool] = lambda *a: True) -> Callable[..., bool]:
    count = {"n": 0}

    def when(*args: Any) -> bool:
        if predicate(*args):
            count["n"] += 1
            return count["n"] == n
        return False

    return when


def _in_checkpoints(f: Any, data: Any) -> bool:
    """A write of one of a checkpoint's files (into its temporary directory)."""
    return "/checkpoints/.step_" in str(getattr(f, "name", ""))


def kill_in_nth_write(n: int, predicate: Callable[..., bool] = lambda *a: True) -> Callable:
    """A hook: the n-th file write (matching ``predicate``) stops half-way, killed by SIGKILL."""

    def hook() -> None:
        from encoderlab import files

        when = _nth(n, predicate)
        real = files._write_stream

        def write(f: Any, data: Any) -> None:
            if when(f, data):
                view = memoryview(data).cast("B")
                f.write(view[: len(view) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real(f, data)

        files._write_stream = write

    return hook


def disk_full_at_write(n: int) -> Callable:
    """A hook: the n-th file write stops half-way with ENOSPC (a disk that just filled up)."""

    def hook() -> None:
        import errno

        from encoderlab import files

        when = _nth(n)
        real = files._write_stream

        def write(f: Any, data: Any) -> None:
            if when(f, data):
                view = memoryview(data).cast("B")
                f.write(view[: len(view) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(f, data)

        files._write_stream = write

    return hook


def count_writes(into: Path, predicate: Callable[..., bool] = lambda *a: True) -> Callable:
    """A hook: count the file writes of the run (matching ``predicate``) into ``into``."""

    def hook() -> None:
        from encoderlab import files

        real = files._write_stream
        count = {"n": 0}

        def write(f: Any, data: Any) -> None:
            if predicate(f, data):
                count["n"] += 1
                into.write_text(str(count["n"]))
            real(f, data)

        files._write_stream = write

    return hook


def _wrap_forward(on_call: Callable[[int], None]) -> None:
    """In a child: call ``on_call(n)`` at the n-th training forward of the run (every trainer:
    pretraining, LM stage 0, VLM stages 1 and 2, counted together)."""
    from encoderlab.train import trainer

    real_init = trainer.Trainer.__init__
    calls = {"n": 0}

    def init(self: Any, task: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, task, *args, **kwargs)
        forward = task.forward

        def counted(inputs: Any) -> Any:
            calls["n"] += 1
            on_call(calls["n"])
            return forward(inputs)

        task.forward = counted

    trainer.Trainer.__init__ = init


def kill_in_step(k: int, delay: float) -> Callable:
    """A hook: SIGKILL ``delay`` seconds after the k-th training step starts (so anywhere in
    that step: forward, backward, optimizer, logging, a checkpoint save)."""

    def hook() -> None:
        import threading

        def on_call(n: int) -> None:
            if n == k:
                threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()

        _wrap_forward(on_call)

    return hook


def count_steps(into: Path) -> Callable:
    """A hook: count the run's training steps (all trainers) into ``into``."""

    def hook() -> None:
        _wrap_forward(lambda n: into.write_text(str(n)))

    return hook


def hooks(*each: Callable[[], None]) -> Callable[[], None]:
    def hook() -> None:
        for h in each:
            h()

    return hook


def nan_loss_at(step: int) -> Callable:
    """A hook: the task's loss becomes NaN at training step ``step`` (0-based forward call)."""

    def hook() -> None:
        from encoderlab.train import trainer

        real_init = trainer.Trainer.__init__

        def init(self: Any, task: Any, *args: Any, **kwargs: Any) -> None:
            real_init(self, task, *args, **kwargs)
            forward, calls = task.forward, {"n": 0}

            def poisoned(inputs: Any) -> Any:
                out = forward(inputs)
                calls["n"] += 1
                if calls["n"] == step + 1:
                    out = {**out, "loss": out["loss"] * float("nan")}
                return out

            task.forward = poisoned

        trainer.Trainer.__init__ = init

    return hook


def preload() -> None:
    """Import everything the commands use, once: forked children then start at once."""
    import encoderlab.cli
    import encoderlab.data.folder
    import encoderlab.evaluate.control
    import encoderlab.study.pipeline
    import encoderlab.study.stages
    import encoderlab.suite.harness
    import encoderlab.train.pretrain
    import encoderlab.vlm.pipeline

    encoderlab.cli._register()


# -- comparing end states --------------------------------------------------------------------
def same_bytes(a: Path, b: Path, names: list[str]) -> bool:
    return all(
        (a / n).is_file() and (b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes()
        for n in names
    )


def checkpoint_snapshot(root: Path) -> dict[str, bytes]:
    """The bytes of every intact checkpoint under ``root`` (what a fault must not lose)."""
    out: dict[str, bytes] = {}
    for ckpt in checkpoint_dirs(root):
        if verify_checkpoint(ckpt) is None:
            for f in ckpt.iterdir():
                out[f"{ckpt.name}/{f.name}"] = f.read_bytes()
    return out


def kept(before: dict[str, bytes], root: Path) -> bool:
    """Every checkpoint intact before the fault is still there, byte for byte, or was
    superseded by a newer intact one (pruning keeps the newest)."""
    now = checkpoint_snapshot(root)
    lost = [k for k, v in before.items() if now.get(k, v) != v]
    newest_before = max((k.split("/")[0] for k in before), default="")
    newest_now = max((k.split("/")[0] for k in now), default="")
    gone = [k for k in before if k not in now]
    return not lost and (not gone or newest_now >= newest_before)


def leftovers(root: Path) -> list[Path]:
    """Temporary files or directories a run left behind."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# -- the bench -------------------------------------------------------------------------------
@dataclass
class Trial:
    kind: str
    point: str
    outcome: str
    survived: bool
    lost: int = 0
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Bench:
    work: Path
    rng: random.Random
    trials: list[Trial] = field(default_factory=list)
    refs: dict[str, Any] = field(default_factory=dict)

    # setup ----------------------------------------------------------------------------------
    def setup(self, kinds: set[str]) -> None:
        """Data, the micro preset and the reference runs the chosen ``kinds`` compare to."""
        preload()
        preset = load_preset("smoke")
        preset["data"] = {"train": TRAIN, "val": 32, "test": 64, "shard_size": SHARD, "workers": 1}
        preset["pretrain"].update(
            batch_size=BATCH,
            samples=TRAIN,
            precision="fp32",
            checkpoint_every=3,
            log_every=1,
            num_workers=0,
        )
        preset["objectives"] = ["dino"]
        preset["vlm_objectives"] = ["dino"]
        preset["fused"] = []
        self.preset = self.work / "micro.yaml"
        self.preset.write_text(yaml.safe_dump(preset, sort_keys=False))
        self.data = self.work / "data"
        data = DataConfig(train=TRAIN, val=32, test=64, shard_size=SHARD, workers=1)
        synthesize(WorldConfig(**preset["world"]), data, self.data, progress=False)

        # reference pretraining run, and how many checkpoint writes it makes
        counter = self.work / "ref" / "writes"
        ref = self.work / "ref" / "pretrain"
        run = run_command(
            self.pretrain_argv(ref),
            self.work / "ref" / "pretrain.log",
            hook=hooks(count_writes(counter, _in_checkpoints), count_steps(counter.with_name("s"))),
        )
        assert run.rc == 0, run.stderr[-3000:]
        self.refs["pretrain"] = ref
        self.refs["pretrain_steps"] = int(counter.with_name("s").read_text())
        self.refs["ckpt_writes"] = int(counter.read_text())
        counter_all = self.work / "ref" / "writes-all"
        again = run_command(
            self.pretrain_argv(self.work / "ref" / "pretrain-count"),
            self.work / "ref" / "pretrain-count.log",
            hook=count_writes(counter_all),
        )
        assert again.rc == 0 and same_bytes(ref, self.work / "ref" / "pretrain-count", RUN_FILES)
        self.refs["all_writes"] = int(counter_all.read_text())

        if kinds & {"kill-vlm-stage", "malformed-benchmark-tsv"}:
            vlm = self.work / "ref" / "vlm" / "vlm"
            steps = self.work / "ref" / "vlm-steps"
            run = run_command(self.vlm_argv(vlm), self.work / "ref" / "vlm.log", count_steps(steps))
            assert run.rc == 0, run.stderr[-3000:]
            self.refs["vlm"], self.refs["vlm_steps"] = vlm, int(steps.read_text())
        if "kill-between-stages" in kinds:
            study = self.work / "ref" / "study"
            run = run_command(self.study_argv(study), self.work / "ref" / "study.log")
            assert run.rc == 0, run.stderr[-3000:]
            self.refs["study"], self.refs["study_seconds"] = study, run.seconds
            records = [json.loads(p.read_text()) for p in study.rglob("stage.json")]
            self.refs["study_stages"] = sum("hash" in r for r in records)  # the cache's only
        if "malformed-labels-csv" in kinds:
            self.make_csv()
        if "malformed-benchmark-tsv" in kinds:
            self.make_tsv()

    def pretrain_argv(self, out: Path, data: Path | None = None) -> list[str]:
        return [
            "pretrain",
            "--objective",
            "dino",
            "--preset",
            str(self.preset),
            "--data",
            str(data or self.data / "train"),
            "--out",
            str(out),
            "--quiet",
        ]

    def vlm_argv(self, out: Path) -> list[str]:
        return [
            "vlm",
            "train",
            "--encoder",
            str(self.refs["pretrain"]),
            "--data",
            str(self.data),
            "--out",
            str(out),
            "--preset",
            str(self.preset),
            "--lm-cache",
            str(out.parent / "lm-cache"),
            "--quiet",
        ]

    def study_argv(self, out: Path) -> list[str]:
        # data -> pretrain/dino -> lm -> vlm/dino: every kind of stage that trains
        return [
            "study",
            "run",
            "--preset",
            str(self.preset),
            "--out",
            str(out),
            "--only",
            "vlm/dino",
        ]

    def record(self, trial: Trial) -> None:
        self.trials.append(trial)
        mark = "ok " if trial.survived and not trial.lost else "FAIL"
        print(f"  {mark} {trial.kind:<24} {trial.point:<40} {trial.outcome}", flush=True)
        if not trial.survived or trial.lost:
            print(f"       {trial.detail[-1500:]}", flush=True)

    def trial_dir(self, kind: str, i: int) -> Path:
        path = self.work / kind / f"t{i:02d}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    # resumable kinds --------------------------------------------------------------------------
    def _resume_pretrain(self, kind: str, point: str, out: Path, first: Run, t: Path) -> None:
        if first.traceback:
            self.record(Trial(kind, point, "traceback", False, 0, first.stderr))
            return
        before = checkpoint_snapshot(out / "checkpoints")
        again = run_command(self.pretrain_argv(out), t / "resume.log")
        equal = again.rc == 0 and same_bytes(out, self.refs["pretrain"], RUN_FILES)
        lost = int(not equal or not kept(before, out / "checkpoints"))
        extra = leftovers(out / "checkpoints")
        ok = equal and not again.traceback and not extra
        detail = again.stderr + (f" leftovers: {extra}" if extra else "")
        self.record(
            Trial(kind, point, "resumed bitwise-equal" if equal else "differs", ok, lost, detail)
        )

    def kill_pretrain(self, i: int) -> None:
        t = self.trial_dir("kill-pretrain", i)
        k, delay = self.rng.randint(1, self.refs["pretrain_steps"]), self.rng.uniform(0, 0.05)
        out = t / "run"
        first = run_command(self.pretrain_argv(out), t / "first.log", kill_in_step(k, delay))
        ckpts = len(checkpoint_dirs(out / "checkpoints"))
        point = f"SIGKILL in step {k}/{self.refs['pretrain_steps']} +{1000 * delay:.0f} ms"
        point += f" ({ckpts} ckpts)" if first.killed else " (finished first)"
        self._resume_pretrain("kill-pretrain", point, out, first, t)

    def kill_checkpoint_write(self, i: int) -> None:
        t = self.trial_dir("kill-checkpoint-write", i)
        n = self.rng.randint(1, self.refs["ckpt_writes"])
        out = t / "run"
        first = run_command(
            self.pretrain_argv(out), t / "first.log", hook=kill_in_nth_write(n, _in_checkpoints)
        )
        partial = [p.name for p in (out / "checkpoints").glob(".*tmp")]
        point = f"SIGKILL in ckpt write {n}/{self.refs['ckpt_writes']}" + (
            " (tmp left)" if partial else ""
        )
        self._resume_pretrain("kill-checkpoint-write", point, out, first, t)

    def corrupt_checkpoint(self, i: int) -> None:
        kind = "corrupted-checkpoint"
        t = self.trial_dir(kind, i)
        out = t / "run"
        n = self.rng.randint(2, self.refs["ckpt_writes"] // 5)  # kill after the n-th save
        hook = kill_in_nth_write(5 * n + 1, _in_checkpoints)  # 5 files per checkpoint
        run_command(self.pretrain_argv(out), t / "first.log", hook=hook)
        ckpts = checkpoint_dirs(out / "checkpoints")
        victim = self.rng.choice(ckpts)
        name = self.rng.choice(
            [
                "model.safetensors",
                "optimizer.safetensors",
                "rng.safetensors",
                "state.json",
                "manifest.json",
            ]
        )
        how = self.rng.choice(["bit-flip", "truncate", "zero-bytes", "delete", "garbage-header"])
        path = victim / name
        data = bytearray(path.read_bytes())
        if how == "bit-flip":
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
            path.write_bytes(bytes(data))
        elif how == "truncate":
            path.write_bytes(bytes(data[: self.rng.randrange(len(data))]))
        elif how == "zero-bytes":
            path.write_bytes(b"")
        elif how == "delete":
            path.unlink()
        else:
            data[: min(8, len(data))] = os.urandom(min(8, len(data)))
            path.write_bytes(bytes(data))
        point = f"{how} {victim.name}/{name} ({len(ckpts)} ckpts)"
        intact_others = [c for c in ckpts if c != victim]
        untouched = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        again = run_command(self.pretrain_argv(out), t / "resume.log")
        if again.rc == 0:
            equal = same_bytes(out, self.refs["pretrain"], RUN_FILES)
            # damage to the newest checkpoint must be reported (older ones are never read)
            warned = victim != ckpts[0] or victim.name in again.stderr
            ok = equal and warned and not again.traceback
            self.record(
                Trial(kind, point, "resumed bitwise-equal", ok, int(not equal), again.stderr)
            )
        else:
            # only acceptable when no other checkpoint was intact: one line, nothing touched
            still = all(p.is_file() and p.read_bytes() == b for p, b in untouched.items())
            ok = again.one_line_error and not intact_others and still
            self.record(Trial(kind, point, "one-line error", ok, int(not still), again.stderr))

    def full_disk(self, i: int) -> None:
        kind = "full-disk"
        t = self.trial_dir(kind, i)
        out = t / "run"
        n = self.rng.randint(1, self.refs["all_writes"])
        first = run_command(self.pretrain_argv(out), t / "first.log", hook=disk_full_at_write(n))
        point = f"ENOSPC at write {n}/{self.refs['all_writes']}"
        extra = leftovers(out)
        named = "no space left on device" in first.stderr and "needs" in first.stderr
        if not (first.one_line_error and named and not extra):
            detail = first.stderr + (f" leftovers: {extra}" if extra else "")
            self.record(Trial(kind, point, "not one line", False, 0, detail))
            return
        before = checkpoint_snapshot(out / "checkpoints")
        again = run_command(self.pretrain_argv(out), t / "resume.log")  # space freed
        equal = again.rc == 0 and same_bytes(out, self.refs["pretrain"], RUN_FILES)
        lost = int(not equal or not kept(before, out / "checkpoints"))
        self.record(
            Trial(kind, point, "one-line error", equal and not again.traceback, lost, again.stderr)
        )

    def nan_loss(self, i: int) -> None:
        kind = "nan-loss"
        t = self.trial_dir(kind, i)
        out = t / "run"
        step = self.rng.randrange(TRAIN // BATCH)
        first = run_command(self.pretrain_argv(out), t / "first.log", hook=nan_loss_at(step))
        good = [c for c in checkpoint_dirs(out / "checkpoints") if verify_checkpoint(c) is None]
        expected = (step // 3) * 3  # checkpoints every 3 steps: the last one before the NaN
        names_it = f"step {step}" in first.stderr
        ok_ckpt = (not good and expected == 0) or (
            bool(good) and good[0].name == f"step_{expected:08d}"
        )
        ok = first.one_line_error and names_it and ok_ckpt
        self.record(
            Trial(kind, f"NaN at step {step}", "one-line error", ok, int(not ok_ckpt), first.stderr)
        )

    def kill_vlm(self, i: int) -> None:
        kind = "kill-vlm-stage"
        t = self.trial_dir(kind, i)
        out = t / "vlm"
        k, delay = self.rng.randint(1, self.refs["vlm_steps"]), self.rng.uniform(0, 0.05)
        first = run_command(self.vlm_argv(out), t / "first.log", kill_in_step(k, delay))
        saved = sorted(t.rglob("checkpoints/step_*"), key=lambda p: p.stat().st_mtime_ns)
        stage = saved[-1].parent.parent.name if saved else "-"  # train: the LM's stage 0
        point = f"SIGKILL in step {k}/{self.refs['vlm_steps']} +{1000 * delay:.0f} ms"
        point += f" (last ckpt in {stage})" if first.killed else " (finished first)"
        again = run_command(self.vlm_argv(out), t / "resume.log")
        ref = self.refs["vlm"]
        names = ["projector.safetensors", "lm/model.safetensors", "feature_stats.safetensors"]
        names = [n for n in names if (ref / n).is_file()]
        equal = again.rc == 0 and same_bytes(out, ref, names)
        if equal:
            a, b = (json.loads((d / "vlm.json").read_text()) for d in (out, ref))
            equal = a["checkpoint_hash"] == b["checkpoint_hash"]
        ok = equal and not again.traceback and not first.traceback
        outcome = "resumed bitwise-equal" if equal else "differs"
        self.record(Trial(kind, point, outcome, ok, int(not equal), again.stderr))

    def kill_study(self, i: int) -> None:
        kind = "kill-between-stages"
        t = self.trial_dir(kind, i)
        out = t / "study"
        n = self.rng.randint(1, self.refs["study_stages"])
        after = self.rng.random() < 0.5  # right after a stage's record, or just before it

        def hook() -> None:
            _suicide_on("encoderlab.study.cache", "finish", _nth(n), after=after)

        first = run_command(self.study_argv(out), t / "first.log", hook=hook)
        point = (
            f"SIGKILL {'after' if after else 'before'} stage {n}/{self.refs['study_stages']} done"
        )
        again = run_command(self.study_argv(out), t / "resume.log")
        ref = self.refs["study"]
        equal = again.rc == 0 and all(
            same_bytes(out / sub, ref / sub, names)
            for sub, names in (
                ("pretrain/dino", RUN_FILES),
                ("vlm/dino", ["projector.safetensors", "lm/model.safetensors"]),
            )
        )
        ok = equal and not again.traceback and not first.traceback and first.killed
        outcome = "resumed bitwise-equal" if equal else "differs"
        self.record(Trial(kind, point, outcome, ok, int(not equal), again.stderr))

    # damaged data -----------------------------------------------------------------------------
    def _damaged_copy(self, t: Path) -> tuple[Path, Path]:
        train = t / "train"
        train.mkdir()
        for shard in sorted((self.data / "train").glob("*.tar")):
            shutil.copyfile(shard, train / shard.name)
        return train, self.rng.choice(sorted(train.glob("*.tar")))

    def _rewrite_member(self, shard: Path, suffix: str, new: Callable[[bytes], bytes]) -> str:
        with tarfile.open(shard) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
        victims = [m.name for m, _ in members if m.name.endswith(suffix)]
        victim = self.rng.choice(victims)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as out:
            for member, data in members:
                if member.name == victim:
                    data = new(data)
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
        shard.write_bytes(buf.getvalue())
        return victim

    def _train_on_damaged(self, kind: str, point: str, train: Path, t: Path) -> None:
        out = t / "run"
        run = run_command(self.pretrain_argv(out, train), t / "run.log")
        if run.rc == 0:
            summary = json.loads((out / "run.json").read_text())
            counted = summary["skipped"] > 0
            outcome = "skipped and counted" if counted else "not counted"
            self.record(Trial(kind, point, outcome, counted, int(not counted), run.stderr))
        else:
            self.record(Trial(kind, point, "one-line error", run.one_line_error, 0, run.stderr))

    def truncated_shard(self, i: int) -> None:
        t = self.trial_dir("truncated-shard", i)
        train, shard = self._damaged_copy(t)
        size = shard.stat().st_size
        cut = self.rng.randrange(1, size - 1024)  # inside the members (the end is padding)
        shard.write_bytes(shard.read_bytes()[:cut])
        self._train_on_damaged("truncated-shard", f"{shard.name} cut at {cut}/{size}", train, t)

    def zero_byte_shard(self, i: int) -> None:
        t = self.trial_dir("zero-byte-shard", i)
        train, shard = self._damaged_copy(t)
        shard.write_bytes(b"")
        self._train_on_damaged("zero-byte-shard", f"{shard.name} emptied", train, t)

    def undecodable_image(self, i: int) -> None:
        t = self.trial_dir("undecodable-image", i)
        train, shard = self._damaged_copy(t)
        how = self.rng.choice(["garbage", "truncated", "empty"])
        mutate = {
            "garbage": lambda d: os.urandom(len(d)),
            "truncated": lambda d: d[: len(d) // 3],
            "empty": lambda d: b"",
        }[how]
        with tarfile.open(shard) as tar:
            image_suffix = ".png" if any(n.endswith(".png") for n in tar.getnames()) else ".jpg"
        victim = self._rewrite_member(shard, image_suffix, mutate)
        self._train_on_damaged("undecodable-image", f"{how} {victim}", train, t)

    def invalid_utf8_caption(self, i: int) -> None:
        t = self.trial_dir("invalid-utf8-caption", i)
        train, shard = self._damaged_copy(t)
        bad = self.rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])
        victim = self._rewrite_member(shard, ".txt", lambda d: d[: len(d) // 2] + bad)
        self._train_on_damaged("invalid-utf8-caption", f"{bad!r} in {victim}", train, t)

    # malformed inputs -------------------------------------------------------------------------
    def _mutate_text(self, text: str, extra: list[Callable[[str], str]]) -> tuple[str, bytes]:
        lines = text.splitlines(keepends=True)
        choices: list[tuple[str, Callable[[], bytes]]] = [
            ("truncated", lambda: text[: self.rng.randrange(len(text))].encode()),
            ("line dropped", lambda: "".join(_drop(lines, self.rng)).encode()),
            ("invalid UTF-8", lambda: _insert(text.encode(), b"\xff\xfe\xc3", self.rng)),
            ("garbage bytes", lambda: _insert(text.encode(), os.urandom(24), self.rng)),
            ("empty", lambda: b""),
            ("binary", lambda: os.urandom(256)),
        ]
        choices += [
            (f.__name__.strip("_").replace("_", " "), lambda f=f: f(text).encode()) for f in extra
        ]
        name, make = self.rng.choice(choices)
        return name, make()

    def _judge_input(self, kind: str, point: str, run: Run) -> None:
        if run.rc == 0:
            self.record(Trial(kind, point, "accepted", not run.traceback, 0, run.stderr))
        else:
            self.record(Trial(kind, point, "one-line error", run.one_line_error, 0, run.stderr))

    def preset_yaml(self, i: int) -> None:
        t = self.trial_dir("malformed-preset-yaml", i)
        text = self.preset.read_text()

        def _unknown_key(s: str) -> str:
            return s.replace("pretrain:\n", "pretrain:\n  bogus_knob: 3\n", 1)

        def _wrong_type(s: str) -> str:
            return s.replace("batch_size: 16", "batch_size: sixteen", 1)

        def _bad_indent(s: str) -> str:
            return s.replace("\n  ", "\n\t", 1)

        def _not_a_mapping(s: str) -> str:
            return "- a\n- list\n"

        def _unknown_objective(s: str) -> str:
            return s.replace("- dino", "- mae", 1)

        how, data = self._mutate_text(
            text, [_unknown_key, _wrong_type, _bad_indent, _not_a_mapping, _unknown_objective]
        )
        bad = t / "bad.yaml"
        bad.write_bytes(data)
        argv = ["study", "plan", "--preset", str(bad), "--out", str(t / "study")]
        self._judge_input("malformed-preset-yaml", how, run_command(argv, t / "run.log"))

    def make_csv(self) -> None:
        folder = self.work / "folder"
        folder.mkdir()
        rows = ["image,caption,category"]
        for k in range(6):
            Image.new("RGB", (32, 32), (40 * k, 90, 200 - 30 * k)).save(folder / f"im{k}.png")
            rows.append(f"im{k}.png,a picture number {k},c{k % 3}")
        self.csv = folder / "labels.csv"
        self.csv.write_text("\n".join(rows) + "\n")
        run = run_command(["data", "stats", str(self.csv)], self.work / "ref" / "csv.log")
        assert run.rc == 0, run.stderr

    def labels_csv(self, i: int) -> None:
        t = self.trial_dir("malformed-labels-csv", i)
        for image in self.csv.parent.glob("*.png"):
            shutil.copyfile(image, t / image.name)
        text = self.csv.read_text()

        def _no_image_column(s: str) -> str:
            return s.replace("image,", "picture,", 1)

        def _missing_image(s: str) -> str:
            return s.replace("im3.png", "nope.png", 1)

        def _unbalanced_quote(s: str) -> str:
            return s.replace("a picture number 2", '"a picture number 2', 1)

        def _extra_columns(s: str) -> str:
            return s.replace("number 1,c1", "number 1,c1,x,y,z", 1)

        def _undecodable_image(s: str) -> str:
            (t / "im4.png").write_bytes(b"not a png")
            return s

        how, data = self._mutate_text(
            text,
            [
                _no_image_column,
                _missing_image,
                _unbalanced_quote,
                _extra_columns,
                _undecodable_image,
            ],
        )
        bad = t / "labels.csv"
        bad.write_bytes(data)
        self._judge_input(
            "malformed-labels-csv", how, run_command(["data", "stats", str(bad)], t / "run.log")
        )

    def make_tsv(self) -> None:
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
        image = base64.b64encode(buf.getvalue()).decode()
        rows = ["index\tquestion\tA\tB\tC\tanswer\tcategory\timage"]
        for k in range(4):
            rows.append(
                f"{k}\tWhat colour is it?\tred\tgreen\tblue\t{'ABC'[k % 3]}\tcolour\t{image}"
            )
        self.tsv = self.work / "bench.tsv"
        self.tsv.write_text("\n".join(rows) + "\n")
        run = run_command(
            self.eval_argv(self.tsv, self.work / "ref" / "eval"), self.work / "ref" / "tsv.log"
        )
        assert run.rc == 0, run.stderr[-3000:]

    def eval_argv(self, tsv: Path, out: Path) -> list[str]:
        return [
            "eval",
            str(self.refs["vlm"]),
            "--suite",
            str(tsv),
            "--out",
            str(out),
            "--preset",
            str(self.preset),
            "--cache",
            str(out / "items"),
            "--quiet",
        ]

    def benchmark_tsv(self, i: int) -> None:
        t = self.trial_dir("malformed-benchmark-tsv", i)
        text = self.tsv.read_text()

        def _missing_column(s: str) -> str:
            return s.replace("\tanswer\t", "\tresponse\t", 1)

        def _answer_not_an_option(s: str) -> str:
            return s.replace("\tB\tcolour", "\tZ\tcolour", 1)

        def _duplicate_index(s: str) -> str:
            return s.replace("\n1\t", "\n0\t", 1)

        def _bad_image(s: str) -> str:
            lines = s.splitlines()
            lines[1] = lines[1].rsplit("\t", 1)[0] + "\tnot*base64"
            return "\n".join(lines) + "\n"

        def _one_option(s: str) -> str:
            return s.replace("\tred\tgreen\tblue\t", "\tred\t\t\t", 1)

        how, data = self._mutate_text(
            text,
            [_missing_column, _answer_not_an_option, _duplicate_index, _bad_image, _one_option],
        )
        bad = t / "bench.tsv"
        bad.write_bytes(data)
        run = run_command(self.eval_argv(bad, t / "eval"), t / "run.log")
        self._judge_input("malformed-benchmark-tsv", how, run)


RUN_FILES = ["objective.safetensors", "encoder.safetensors"]


def _drop(lines: list[str], rng: random.Random) -> list[str]:
    if len(lines) < 2:
        return []
    k = rng.randrange(len(lines))
    return lines[:k] + lines[k + 1 :]


def _insert(data: bytes, junk: bytes, rng: random.Random) -> bytes:
    k = rng.randrange(len(data) + 1)
    return data[:k] + junk + data[k:]


KINDS: dict[str, Callable[[Bench, int], None]] = {
    "kill-pretrain": Bench.kill_pretrain,
    "kill-checkpoint-write": Bench.kill_checkpoint_write,
    "kill-vlm-stage": Bench.kill_vlm,
    "kill-between-stages": Bench.kill_study,
    "truncated-shard": Bench.truncated_shard,
    "zero-byte-shard": Bench.zero_byte_shard,
    "undecodable-image": Bench.undecodable_image,
    "invalid-utf8-caption": Bench.invalid_utf8_caption,
    "nan-loss": Bench.nan_loss,
    "corrupted-checkpoint": Bench.corrupt_checkpoint,
    "full-disk": Bench.full_disk,
    "malformed-preset-yaml": Bench.preset_yaml,
    "malformed-labels-csv": Bench.labels_csv,
    "malformed-benchmark-tsv": Bench.benchmark_tsv,
}


def table(trials: list[Trial]) -> str:
    rows = [
        "| fault | injected | survived | outcomes | data lost | s/trial |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for kind in KINDS:
        mine = [t for t in trials if t.kind == kind]
        if not mine:
            continue
        outcomes = Counter(t.outcome for t in mine)
        text = ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items()))
        survived = sum(t.survived and not t.lost for t in mine)
        lost = sum(t.lost for t in mine)
        secs = sum(t.seconds for t in mine) / len(mine)
        rows.append(f"| {kind} | {len(mine)} | {survived} | {text} | {lost} | {secs:.1f} |")
    survived = sum(t.survived and not t.lost for t in trials)
    lost = sum(t.lost for t in trials)
    rows.append(f"| **total** | **{len(trials)}** | **{survived}** | | **{lost}** | |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"fault kinds: {', '.join(KINDS)}",
    )
    parser.add_argument("--trials", type=int, default=3, help="injections per fault kind")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injection points")
    parser.add_argument("--kinds", default="all", help="comma-separated fault kinds (or all)")
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", type=Path, default=None, help="also write every trial here")
    args = parser.parse_args()
    kinds = list(KINDS) if args.kinds == "all" else [k.strip() for k in args.kinds.split(",")]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown fault kind {unknown[0]!r}; kinds: {', '.join(KINDS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="encoderlab-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bench = Bench(work, random.Random(args.seed))
    try:
        print(f"setup (micro smoke data, reference runs) in {work}", flush=True)
        bench.setup(set(kinds))
        print(f"setup done in {time.perf_counter() - start:.0f} s", flush=True)
        for kind in kinds:
            print(f"{kind}:", flush=True)
            for i in range(args.trials):
                t0 = time.perf_counter()
                KINDS[kind](bench, i)
                bench.trials[-1].seconds = time.perf_counter() - t0
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    print()
    print(table(bench.trials))
    print(f"\n{len(bench.trials)} faults injected in {seconds:.0f} s (seed {args.seed})")
    if args.json:
        args.json.write_text(json.dumps([t.__dict__ for t in bench.trials], indent=1))
    bad = [t for t in bench.trials if not t.survived or t.lost]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
