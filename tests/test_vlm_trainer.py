"""The generic trainer: exact resume after kill -9, refused config changes, outputs, best model."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from ctsurv.errors import ConfigError
from ctsurv.vlm.trainer import TrainSettings, cosine_with_warmup, random_batches, train

def tiny_run(out, kill_at: int = 0, lr: float = 0.05, restart: bool = False):
    """A tiny regression with dropout (a resumed run must restore the torch RNG), gradient
    accumulation, warm-up and clipping; kills its own process with SIGKILL at micro-batch
    ``kill_at`` when asked."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen)
    y = x @ torch.randn(6, 1, generator=gen) + 0.1 * torch.randn(40, 1, generator=gen)
    data = [{"x": x[i], "y": y[i]} for i in range(40)]
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    calls = {"n": 0}

    def loss_fn(m, batch):
        if m.training:
            calls["n"] += 1
            if calls["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        mse = torch.nn.functional.mse_loss(m(batch["x"]), batch["y"])
        l1 = 1e-3 * sum(p.abs().sum() for p in m.parameters())
        return {"loss": mse + l1, "mse": mse, "l1": l1, "tokens": len(batch["x"])}

    def save_fn(m, folder):
        folder.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(folder / "model.safetensors"))

    settings = TrainSettings(lr=lr, batch_size=4, grad_accum=2, max_steps=12, warmup_steps=3, checkpoint_every=3,
                             eval_every=2, seed=5, precision="fp32", gradient_checkpointing=False, max_grad_norm=0.5,
                             progress=False)
    return train(model, data[:32], data[32:], loss_fn, settings, out, _collate, save_fn,
                 run_config={"model": "mlp16"}, restart=restart)


def _collate(items):
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _killed_run(out: Path, kill_at: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, __file__, str(out), str(kill_at)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


COMPARED = ["step", "epoch", "loss", "mse", "l1", "lr", "grad_norm", "val_loss", "val_mse", "val_l1"]


def test_kill_9_then_resume_continues_the_same_curve(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    whole = tiny_run(tmp_path / "whole")
    # 2 micro-batches per step: micro-batch 17 is the first of step 9, after the checkpoint at step 6
    _killed_run(tmp_path / "killed", 17)
    partial = pd.read_csv(tmp_path / "killed" / "metrics.csv")
    assert partial["step"].max() == 8  # steps 7-8 were logged after the last checkpoint
    resumed = tiny_run(tmp_path / "killed")
    a = pd.read_csv(tmp_path / "whole" / "metrics.csv")
    b = pd.read_csv(tmp_path / "killed" / "metrics.csv")
    assert a["step"].tolist() == list(range(1, 13)) == b["step"].tolist()
    assert (a[COMPARED].fillna(-1) - b[COMPARED].fillna(-1)).abs().to_numpy().max() < 1e-6
    assert (whole.best_step, whole.best_val_loss) == (resumed.best_step, resumed.best_val_loss)
    assert a["loss"].iloc[-1] < a["loss"].iloc[0]  # it learns
    # warm-up then cosine decay (the lr column is the rate each step used)
    assert a["lr"].tolist()[:4] == pytest.approx([0.0, 0.05 / 3, 0.1 / 3, 0.05])
    assert a["lr"].iloc[-1] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 8 / 9)))
    # the best model is the evaluated step with the lowest validation loss
    assert whole.best_step == a.loc[a["val_loss"].idxmin(), "step"]
    assert whole.best_val_loss == pytest.approx(a["val_loss"].min())
    assert (tmp_path / "whole" / "best" / "model.safetensors").exists()
    assert a["val_loss"].notna().sum() == 6  # every 2 steps
    assert (a["tokens_per_s"] > 0).all() and (a["grad_norm"] > 0).all()
    assert sorted(p.name for p in (tmp_path / "whole" / "checkpoints").glob("step-*")) == ["step-000009", "step-000012"]
    # TensorBoard: one loss per step (purge_step drops what the killed run wrote after its checkpoint)
    events = EventAccumulator(str(tmp_path / "killed" / "tensorboard"))
    events.Reload()
    # (the killed run's events of steps 7-8 may or may not be purged: they equal the resumed ones)
    logged = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(logged) == list(range(1, 13))
    assert [logged[k] for k in range(1, 13)] == pytest.approx(b["loss"].tolist(), rel=1e-6)
    assert sorted({e.step for e in events.Scalars("val/loss")}) == [2, 4, 6, 8, 10, 12]
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s", "train/mse"} <= set(events.Tags()["scalars"])

    # Another learning rate on the same folder is refused, naming the key; --restart starts over.
    with pytest.raises(ConfigError, match=r"settings\.lr: 0\.05 -> 0\.01.*--restart"):
        tiny_run(tmp_path / "killed", lr=0.01)
    tiny_run(tmp_path / "killed", lr=0.01, restart=True)
    c = pd.read_csv(tmp_path / "killed" / "metrics.csv")
    assert c["step"].tolist() == list(range(1, 13)) and c["lr"].max() == pytest.approx(0.01)


def test_schedule_matches_transformers():
    from transformers.optimization import get_cosine_schedule_with_warmup

    def rates(make):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt, 5, 40)
        out = []
        for _ in range(40):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert rates(cosine_with_warmup) == pytest.approx(rates(get_cosine_schedule_with_warmup), abs=1e-12)


def test_in_process_settings_and_no_validation(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [{"x": torch.randn(3), "y": torch.randn(1)} for _ in range(10)]

    def loss_fn(m, batch):
        return {"loss": torch.nn.functional.mse_loss(m(batch["x"]), batch["y"])}

    def collate(items):
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}

    saved = []
    settings = TrainSettings(lr=0.1, batch_size=4, epochs=2, precision="fp32", gradient_checkpointing=False,
                             progress=False, checkpoint_every=100)
    res = train(model, data, None, loss_fn, settings, tmp_path, collate, lambda m, f: saved.append(f) or f.mkdir())
    assert res.steps == 6 and res.best_step == 6  # 3 batches (4, 4, 2) per epoch; last model kept
    assert saved and (tmp_path / "best").is_dir()
    with pytest.raises(ConfigError, match="exactly one of max_steps and epochs"):
        TrainSettings(max_steps=3, epochs=1)
    # the default order is a permutation per epoch, padded to the process count
    batches = random_batches(10, 4, seed=0, multiple_of=4)(0)
    assert sorted(i for b in batches for i in b)[:10] != [] and sum(map(len, batches)) == 12



@pytest.mark.parametrize("processes, accum", [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_total_batch_is_fixed_and_accumulation_follows_the_process_count(processes, accum):
    settings = TrainSettings(batch_size=12, grad_accum=None, total_batch=96, epochs=1)
    assert settings.accumulation(processes) == accum
    assert settings.batch_size * settings.accumulation(processes) * processes == 96
    # without total_batch the examples per step grow with the processes (the old meaning)
    assert TrainSettings(batch_size=12, grad_accum=8, epochs=1).accumulation(processes) == 8


def test_total_batch_errors_name_the_numbers():
    with pytest.raises(ConfigError, match=r"total_batch 96 is not a multiple of batch_size 12 x 3 process\(es\) = 36"):
        TrainSettings(batch_size=12, grad_accum=None, total_batch=96, epochs=1).accumulation(3)
    with pytest.raises(ConfigError, match="grad_accum 8 and total_batch 96 disagree with 2 process"):
        TrainSettings(batch_size=12, grad_accum=8, total_batch=96, epochs=1).accumulation(2)
    with pytest.raises(ConfigError, match="give grad_accum, or total_batch"):
        TrainSettings(grad_accum=None, epochs=1)


def test_the_trainer_derives_accumulation_from_total_batch_and_calls_the_models_checkpointing(tmp_path):
    """total_batch 8 with batch 4 on one process: 2 micro-batches a step (32 examples: 4 steps an
    epoch); gradient checkpointing on calls the model's own method, and a model without one is refused."""
    torch.manual_seed(0)
    data = [{"x": torch.randn(3), "y": torch.randn(1)} for _ in range(32)]

    class Net(torch.nn.Linear):
        calls = 0

        def gradient_checkpointing_enable(self):
            Net.calls += 1

    def loss_fn(m, batch):
        return {"loss": torch.nn.functional.mse_loss(m(batch["x"]), batch["y"])}

    settings = TrainSettings(lr=0.1, batch_size=4, grad_accum=None, total_batch=8, epochs=1, precision="fp32",
                             gradient_checkpointing=True, progress=False, checkpoint_every=100)
    res = train(Net(3, 1), data, None, loss_fn, settings, tmp_path / "a", _collate, lambda m, f: f.mkdir())
    assert res.steps == 4 and Net.calls == 1
    with pytest.raises(ConfigError, match="Linear has no gradient_checkpointing_enable"):
        train(torch.nn.Linear(3, 1), data, None, loss_fn, settings, tmp_path / "b", _collate, lambda m, f: f.mkdir())


if __name__ == "__main__":  # the killed run of test_kill_9_then_resume_continues_the_same_curve
    tiny_run(Path(sys.argv[1]), kill_at=int(sys.argv[2]))
