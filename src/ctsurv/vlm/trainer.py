"""One trainer for stage 1 and stage 2: Accelerate, AdamW, cosine warm-up, exact resume.

``train(model, train_data, val_data, loss_fn, settings, out_dir, collate_fn, save_fn)``

- ``loss_fn(model, batch) -> {"loss": tensor, **parts}``: every part is logged; an optional
  ``"tokens"`` entry (a count) feeds tokens/s, otherwise the batch's ``attention_mask`` does.
- One *step* is one optimizer update of ``batch_size x grad_accum x processes`` examples.
  With ``total_batch`` set, that product is fixed and ``grad_accum`` is derived from the
  process count (:meth:`TrainSettings.accumulation`): the paper's total of 96 is 12 x 8 on one
  GPU and 12 x 4 on each of two.  The data order is a seeded permutation per epoch (or the
  caller's ``batch_sampler``), so the position in the data is ``step x grad_accum``
  micro-batches: nothing else to store.
- Precision: ``auto`` is bf16 autocast on a GPU and fp32 on a CPU (bf16 is 24x slower on CPUs
  without native support; tests pin fp32).  Gradient checkpointing ``auto``: on a GPU only; the
  trainer calls the model's own ``gradient_checkpointing_enable()`` (each ctsurv model knows
  where its decoder is).
- Several GPUs: run the same code under ``accelerate launch --num_processes N``
  (config/accelerate/*.yaml pick DDP, FSDP or DeepSpeed ZeRO-3); each process takes every
  N-th example of each global batch.
- Outputs in ``out_dir``: ``metrics.csv`` (step, epoch, loss, each part, lr, grad_norm,
  tokens_per_s, val_loss and val parts at evaluations), ``tensorboard/`` event files,
  ``checkpoints/`` (see :mod:`ctsurv.vlm.checkpoint`) and ``best/`` (``save_fn``'s folder
  for the lowest validation loss, or, with ``score_fn``, the highest validation score with the
  validation loss breaking ties; the last model when there is no validation data).
- Sharded weights (FSDP, DeepSpeed ZeRO-3): ``best/`` is written from the full state dict,
  gathered from every process onto the main one, which alone writes; ``save_fn`` must then
  take it as ``save_fn(model, folder, state_dict=...)`` (:func:`ctsurv.vlm.save` does), which
  is checked before training starts.  With DDP or one process ``save_fn(model, folder)``.
- Resume: a re-run finds the newest checkpoint and continues the same curve (to float
  precision on a CPU).  A checkpoint written under another configuration (settings or the
  caller's ``run_config``) is refused with the differing keys, unless ``restart=True``, which
  deletes checkpoints, metrics, event files and ``best/`` and starts over.  Changing only
  ``checkpoint_every``, ``keep_checkpoints`` or ``progress`` is allowed.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..atomic import atomic_path
from ..errors import ConfigError, CtsurvError
from .checkpoint import (config_diff, fingerprint, full_state_dict, is_sharded, latest_checkpoint, load_checkpoint,
                         read_state, save_checkpoint)

log = logging.getLogger(__name__)

BatchSampler = Callable[[int], Sequence[Sequence[int]]]


@dataclass
class TrainSettings:
    """Optimisation settings (config ``vlm.stage1`` / ``vlm.stage2``); ``batch_size`` is per process."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 8
    grad_accum: int | None = 1
    total_batch: int | None = None
    max_steps: int | None = None
    epochs: float | None = None
    checkpoint_every: int = 50
    eval_every: int = 50
    seed: int = 0
    precision: str = "auto"
    gradient_checkpointing: bool | str = "auto"
    max_grad_norm: float | None = 1.0
    patience: int | None = None
    keep_checkpoints: int = 2
    progress: bool = True

    #: settings a resumed run may change without changing the loss curve
    RESUME_NEUTRAL = ("checkpoint_every", "keep_checkpoints", "progress")

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if (self.max_steps is None) == (self.epochs is None):
            raise ConfigError("training settings: give exactly one of max_steps and epochs")
        if not (math.isfinite(float(self.lr)) and float(self.lr) > 0):
            raise ConfigError(f"training settings: lr must be a number greater than 0, got {self.lr!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"training settings: precision is {self.precision!r}; choose auto, fp32 or bf16")
        if self.grad_accum is None and self.total_batch is None:
            raise ConfigError("training settings: give grad_accum, or total_batch to derive it from the process count")
        for key in ("batch_size", "grad_accum", "total_batch", "checkpoint_every", "eval_every", "keep_checkpoints"):
            value = getattr(self, key)
            if value is not None and int(value) < 1:
                raise ConfigError(f"training settings: {key} must be at least 1, got {value}")

    def accumulation(self, processes: int) -> int:
        """Micro-batches per optimizer step with ``processes`` processes (one per GPU).

        Without ``total_batch`` it is ``grad_accum``, and the examples per step grow with the
        process count.  With it, the examples per step are ``total_batch`` whatever the count:
        ``total_batch / (batch_size x processes)``, which must be a whole number.  A
        ``grad_accum`` given as well must agree (or be null).
        """
        if self.total_batch is None:
            return int(self.grad_accum)
        per_pass = int(self.batch_size) * int(processes)
        if self.total_batch % per_pass:
            raise ConfigError(
                f"training settings: total_batch {self.total_batch} is not a multiple of batch_size {self.batch_size} x "
                f"{processes} process(es) = {per_pass}; change total_batch, batch_size or the GPU count")
        accum = self.total_batch // per_pass
        if self.grad_accum is not None and int(self.grad_accum) != accum:
            raise ConfigError(
                f"training settings: grad_accum {self.grad_accum} and total_batch {self.total_batch} disagree with "
                f"{processes} process(es) of batch_size {self.batch_size} (total_batch needs grad_accum {accum}); "
                "set grad_accum: null to derive it")
        return accum

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainSettings":
        """Build from a config section, ignoring keys that are not training settings (the schema
        refuses unknown keys); ``max_steps``, when set, overrides ``epochs`` (as the config says)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        if values.get("max_steps") is not None:
            values["epochs"] = None
        return cls(**values)

    def resume_key(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RESUME_NEUTRAL}


@dataclass
class TrainResult:
    best_dir: Path
    best_step: int | None
    best_val_loss: float | None
    steps: int
    stopped_early: bool
    best_score: float | None = None


def random_batches(n: int, batch_size: int, seed: int, multiple_of: int = 1) -> BatchSampler:
    """Default order: a fresh seeded permutation each epoch, cut into batches.

    The permutation is padded by wrapping around to a multiple of ``multiple_of`` (the process
    count) so that every process gets examples from the last batch too.
    """

    def batches(epoch: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen).tolist()
        pad = (-len(order)) % multiple_of
        order += order[:pad]
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    return batches


def train(
    model: torch.nn.Module,
    train_data: Sequence,
    val_data: Sequence | None,
    loss_fn: Callable[[torch.nn.Module, dict], dict],
    settings: TrainSettings,
    out_dir: str | Path,
    collate_fn: Callable[[list], dict],
    save_fn: Callable[[torch.nn.Module, Path], None],
    *,
    run_config: Mapping | None = None,
    restart: bool = False,
    batch_sampler: BatchSampler | None = None,
    lr_groups: Mapping[str, float] | None = None,
    on_start: Callable[[torch.nn.Module, Any], None] | None = None,
    score_fn: Callable[[torch.nn.Module, Any], float] | None = None,
    score_name: str = "score",
) -> TrainResult:
    """Train the parameters of ``model`` that require gradients; see the module docstring.

    Args:
        train_data, val_data: indexable datasets; ``collate_fn(list of items) -> batch dict``.
        save_fn: ``save_fn(unwrapped_model, folder)`` writes a usable model (e.g. ctsurv.vlm.save);
            with sharded weights it is called with ``state_dict=`` the gathered full weights.
        run_config: what else defines the run (model, data); a checkpoint made under another
            one is refused (or deleted when ``restart``).
        batch_sampler: ``epoch -> list of global batches of indices``; must depend on the
            epoch only (it is re-evaluated on resume).  Default: :func:`random_batches`.
        lr_groups: ``parameter-name prefix -> learning rate`` for parts that need their own
            (stage 2: the survival branch, a small fresh head next to a pre-trained decoder);
            each becomes an AdamW parameter group after the default group (``settings.lr``),
            all following the same warm-up/cosine schedule.  The groups are part of the
            optimizer's state dict, so a checkpoint resumes only under the same grouping
            (include them in ``run_config``).  A prefix that matches no trainable parameter is
            an error.
        on_start: ``on_start(prepared_model, accelerator)`` runs once before the first step of
            a fresh run (not on resume: what it sets must live in the model's state dict,
            which the checkpoint restores), e.g. stage 2's standardiser fit.
        score_fn: ``score_fn(prepared_model, accelerator) -> float``, higher is better (stage 2:
            the validation c-index), run at each evaluation after the validation loss and
            logged as ``val_<score_name>``.  With it ``best/`` is the model of the highest
            score, the validation loss breaking ties (a NaN score ranks last); ``patience``
            counts evaluations without a better one.  Every process must return the same value.
    """
    out_dir = Path(out_dir)
    if len(train_data) == 0:
        raise CtsurvError("no training examples: the training split is empty")
    accelerator, ga = _make_accelerator(settings)
    procs, rank = accelerator.num_processes, accelerator.process_index
    if is_sharded(accelerator) and not accepts_state_dict(save_fn):
        raise ConfigError(
            f"{accelerator.distributed_type.value} shards the weights over the processes, but the save function "
            f"{getattr(save_fn, '__qualname__', save_fn)!r} takes no state_dict argument, so the best model could "
            "not be written whole; give it one (as ctsurv.vlm.save has) or train with DDP (config/accelerate/ddp.yaml)"
        )
    sampler = batch_sampler or random_batches(len(train_data), settings.batch_size * procs, settings.seed, procs)
    per_epoch = len(sampler(0))
    log.info("optimizer step: %d examples (batch_size %d x grad_accum %d x %d process(es))",
             settings.batch_size * ga * procs, settings.batch_size, ga, procs)
    total = settings.max_steps or max(1, math.ceil(settings.epochs * per_epoch / ga))
    config = {
        "settings": settings.resume_key(),
        "run": dict(run_config or {}),
        "processes": procs,
        "grad_accum": ga,
        "train_size": len(train_data),
        "val_size": len(val_data or ()),
    }
    key = fingerprint(config)
    ckpt_root = out_dir / "checkpoints"
    best_dir = out_dir / "best"

    if restart and accelerator.is_main_process:
        shutil.rmtree(ckpt_root, ignore_errors=True)
        log.info("restart: removed the checkpoints in %s", out_dir)
    accelerator.wait_for_everyone()
    latest = latest_checkpoint(ckpt_root)
    if latest is None and accelerator.is_main_process:  # a fresh run: nothing of an older one stays
        for path in (best_dir, out_dir / "tensorboard"):
            shutil.rmtree(path, ignore_errors=True)
        (out_dir / "metrics.csv").unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    if latest is not None:
        saved = read_state(latest)
        if saved["fingerprint"] != key:
            raise ConfigError(
                f"{latest} was written under another configuration ({config_diff(saved['config'], config)}); "
                f"to start over, delete {out_dir} or re-run with --restart (workflow: vlm.stage1.restart: true)"
            )

    _enable_gradient_checkpointing(model, settings, accelerator.device)
    groups = param_groups(model, settings.lr, lr_groups)
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)
    scheduler = cosine_with_warmup(optimizer, settings.warmup_steps, total)
    model, optimizer = accelerator.prepare(model, optimizer)

    state = {"step": 0, "best_val_loss": None, "best_score": None, "best_step": None, "bad_evals": 0, "finished": False,
             "stopped_early": False}
    if latest is not None:
        state.update(load_checkpoint(latest, accelerator, model, optimizer, scheduler)["train"])
        log.info("resuming from %s (step %d of %d)", latest.name, state["step"], total)
    else:
        _seed_everything(settings.seed + rank)
        if on_start is not None:
            on_start(model, accelerator)
    accelerator.step = state["step"] * ga

    main = accelerator.is_main_process
    metrics = MetricsLog(out_dir / "metrics.csv", state["step"]) if main else None
    writer = _tensorboard(out_dir / "tensorboard", state["step"]) if main else None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=state["step"], desc="train", disable=not (main and settings.progress),
               dynamic_ncols=True, mininterval=2.0)
    epoch_cache: dict[int, Sequence[Sequence[int]]] = {}
    model.train()
    try:
        while state["step"] < total and not state["finished"]:
            started = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            tokens = torch.zeros((), device=accelerator.device)
            lr = optimizer.param_groups[0]["lr"]
            grad_norm = torch.zeros(())
            for k in range(ga):
                micro = state["step"] * ga + k
                epoch, pos = divmod(micro, per_epoch)
                if epoch not in epoch_cache:
                    epoch_cache.clear()
                    epoch_cache[epoch] = sampler(epoch)
                local = list(epoch_cache[epoch][pos])[rank::procs]
                if not local:
                    raise CtsurvError(f"batch {pos} of epoch {epoch} has fewer examples than processes ({procs})")
                batch = _to_device(collate_fn([train_data[i] for i in local]), accelerator.device)
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        out = loss_fn(model, batch)
                    _stop_on_non_finite(accelerator, out["loss"], state["step"] + 1, batch, ckpt_root, best_dir)
                    accelerator.backward(out["loss"])
                    if accelerator.sync_gradients:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm or math.inf)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                for name, value in _parts(out).items():
                    sums[name] = sums.get(name, 0.0) + value / ga
                tokens += _token_count(out, batch)
            scheduler.step()
            state["step"] += 1
            step = state["step"]
            row = {"step": step, "epoch": round(state["step"] * ga / per_epoch, 4)}
            row.update({k: float(v) for k, v in _reduce(accelerator, sums, "mean").items()})
            tokens = float(accelerator.reduce(tokens, "sum"))
            row.update(lr=lr, grad_norm=float(grad_norm), tokens_per_s=round(tokens / (time.perf_counter() - started), 2))

            if val_data and (step % settings.eval_every == 0 or step == total):
                val = evaluate(model, val_data, loss_fn, collate_fn, settings.batch_size, accelerator)
                row.update({f"val_{k}": v for k, v in val.items()})
                score = None
                if score_fn is not None:
                    score = float(score_fn(model, accelerator))
                    model.train()
                    row[f"val_{score_name}"] = score
                if is_better(val["loss"], score, state["best_val_loss"], state.get("best_score"), state["best_step"]):
                    state.update(best_val_loss=val["loss"], best_score=score, best_step=step, bad_evals=0)
                    _save_best(accelerator, model, save_fn, best_dir)
                else:
                    state["bad_evals"] += 1
                    if settings.patience and state["bad_evals"] >= settings.patience:
                        state.update(finished=True, stopped_early=True)
                        log.info("early stop at step %d: %d evaluations without a better validation loss",
                                 step, state["bad_evals"])
            if step == total:
                state["finished"] = True
                if not val_data:
                    state.update(best_step=step)
                    _save_best(accelerator, model, save_fn, best_dir)
            if main:
                metrics.write(row, val_parts=bool(val_data), extra=[f"val_{score_name}"] if score_fn and val_data else ())
                for name, value in row.items():
                    if name not in ("step", "epoch"):
                        group = "val" if name.startswith("val_") else "train"
                        writer.add_scalar(f"{group}/{name.removeprefix('val_')}", value, step)
                writer.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
            if step % settings.checkpoint_every == 0 or state["finished"]:
                save_checkpoint(ckpt_root, accelerator, model, optimizer, scheduler,
                                {"step": step, "fingerprint": key, "config": config, "train": state},
                                keep=settings.keep_checkpoints)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if metrics is not None:
            metrics.close()
    return TrainResult(best_dir, state["best_step"], state["best_val_loss"], state["step"], state["stopped_early"],
                       state.get("best_score"))


def is_better(loss: float, score: float | None, best_loss: float | None, best_score: float | None,
              best_step: int | None) -> bool:
    """Whether an evaluation beats the best so far: by ``score`` (higher; NaN or None ranks
    last) when one is given, the validation loss (lower) breaking ties; by the loss alone
    without a score."""
    if best_step is None:
        return True
    if score is None:
        return best_loss is None or loss < best_loss
    rank = -math.inf if math.isnan(score) else score
    best = -math.inf if best_score is None or math.isnan(best_score) else best_score
    return rank > best or (rank == best and (best_loss is None or loss < best_loss))


def param_groups(model: torch.nn.Module, lr: float, lr_groups: Mapping[str, float] | None = None) -> list[dict]:
    """AdamW parameter groups of the trainable parameters: the default group at ``lr`` (left out
    when empty), then one group per ``lr_groups`` prefix (first matching prefix wins)."""
    prefixes = list((lr_groups or {}).items())
    default: list[torch.nn.Parameter] = []
    extra: dict[str, list[torch.nn.Parameter]] = {p: [] for p, _ in prefixes}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        prefix = next((p for p, _ in prefixes if name.startswith(p)), None)
        (extra[prefix] if prefix is not None else default).append(param)
    if not default and not any(extra.values()):
        raise CtsurvError("the model has no trainable parameters")
    empty = [p for p, params in extra.items() if not params]
    if empty:
        raise ConfigError(f"learning-rate groups {empty} match no trainable parameter")
    groups = [{"params": default, "lr": float(lr), "name": "default"}] if default else []
    groups += [{"params": extra[p], "lr": float(group_lr), "name": p} for p, group_lr in prefixes]
    return groups


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0, then half a cosine down to 0 at ``total_steps``.

    The formula of ``transformers.get_cosine_schedule_with_warmup`` (num_cycles 0.5; the test
    checks they agree), written out because importing ``transformers.optimization`` pulls in
    peft and costs seconds in every process that only needs the schedule.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate(model, data: Sequence, loss_fn, collate_fn, batch_size: int, accelerator) -> dict[str, float]:
    """Mean of each loss part over ``data`` (weighted by batch size), every process a share.

    Every process runs the same number of forward passes, because a wrapped model's forward
    is collective (FSDP gathers the weights, DDP broadcasts buffers): a process whose share
    is one batch short repeats its first batch and does not count it.
    """
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), device=accelerator.device)
    procs = accelerator.num_processes
    starts = list(range(0, len(data), batch_size))
    mine = starts[accelerator.process_index :: procs]
    rounds = math.ceil(len(starts) / procs)
    for k in range(rounds):
        counted = k < len(mine)
        start = mine[k] if counted else starts[0]
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        batch = _to_device(collate_fn(items), accelerator.device)
        with accelerator.autocast():
            out = loss_fn(model, batch)
        if not counted:
            continue
        for name, value in _parts(out).items():
            sums[name] = sums.get(name, 0.0) + value * len(items)
        count += len(items)
    model.train()
    count = accelerator.reduce(count, "sum")
    sums = _reduce(accelerator, sums, "sum")
    return {k: float(v / count) for k, v in sums.items()}


class MetricsLog:
    """``metrics.csv``, one row per step; on resume, rows after the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.columns: list[str] | None = None
        kept: list[dict] = []
        if path.exists() and resume_step > 0:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.columns = reader.fieldnames
                for row in reader:
                    if None in row or None in row.values():  # a line cut by the kill
                        continue
                    if int(row["step"]) <= resume_step:
                        kept.append(row)
        if self.columns:
            with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, self.columns)
                w.writeheader()
                w.writerows(kept)
            self.fh = open(path, "a", newline="", encoding="utf-8")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "w", newline="", encoding="utf-8")

    def write(self, row: dict, val_parts: bool, extra: Sequence[str] = ()) -> None:
        if self.columns is None:
            losses = [k for k in row if k not in ("step", "epoch", "lr", "grad_norm", "tokens_per_s")]
            self.columns = list(row)
            if val_parts:
                self.columns += [f"val_{k}" for k in losses]
            self.columns += [c for c in extra if c not in self.columns]
            csv.DictWriter(self.fh, self.columns).writeheader()
        csv.DictWriter(self.fh, self.columns, extrasaction="ignore").writerow(row)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


# --------------------------------------------------------------------------- helpers


def _make_accelerator(settings: TrainSettings):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        # Several trainings in one process (tests, benchmarks) each get fresh settings.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    from accelerate import PartialState

    cuda = torch.cuda.is_available()
    bf16 = settings.precision == "bf16" or (settings.precision == "auto" and cuda and torch.cuda.is_bf16_supported())
    accum = settings.accumulation(PartialState(cpu=not cuda).num_processes)
    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", gradient_accumulation_steps=accum, cpu=not cuda)
    return accelerator, accum


class NonFiniteLoss(CtsurvError):
    """The training loss became NaN or infinite: training stops before the step is applied."""


def _stop_on_non_finite(accelerator, loss: torch.Tensor, step: int, batch: Mapping, ckpt_root: Path, best_dir: Path) -> None:
    """Stop at the first non-finite loss, before backward and the optimizer step, so that no
    weight, checkpoint or best model is touched by it.  Every process learns of it (a flag
    summed over processes), so none is left waiting in the next collective."""
    bad = (~torch.isfinite(loss.detach())).float().reshape(())
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, "sum")
    if not bool(bad > 0):
        return
    studies = list(batch.get("study_ids") or batch.get("ids") or [])
    shown = ", ".join(f"'{s}'" for s in studies[:8]) + (f" and {len(studies) - 8} more" if len(studies) > 8 else "")
    own = torch.isfinite(loss.detach()).item()
    where = (f"on another process's batch (this process's studies: {shown})" if own else
             f"on the batch of studies {shown}" if studies else "on this batch")
    latest = latest_checkpoint(ckpt_root)
    kept = f"the last good checkpoint {latest} is kept (training resumes from it)" if latest else "no checkpoint was written yet"
    best = f"; the best model so far stays in {best_dir}" if Path(best_dir).exists() else ""
    value = "NaN or infinite on another process" if own else f"{loss.detach().float().item()}"
    raise NonFiniteLoss(
        f"step {step}: the training loss is {value} {where}; training stopped before applying the step: {kept}{best}. "
        "Check those studies' features and answers (NaN or infinite values), or lower the learning rate")


def _enable_gradient_checkpointing(model, settings: TrainSettings, device) -> None:
    """Call the model's own ``gradient_checkpointing_enable()`` when the settings ask for it."""
    wanted = settings.gradient_checkpointing
    if wanted == "auto":
        wanted = torch.device(device).type == "cuda"
    if not wanted:
        return
    if not callable(getattr(model, "gradient_checkpointing_enable", None)):
        raise ConfigError(f"gradient_checkpointing is on but {type(model).__name__} has no gradient_checkpointing_enable() "
                          "method; set gradient_checkpointing: false")
    model.gradient_checkpointing_enable()


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _tensorboard(folder: Path, resume_step: int):
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events logged after the checkpoint by a killed run
    return SummaryWriter(log_dir=str(folder), purge_step=resume_step + 1 if resume_step else None)


def _parts(out: Mapping) -> dict[str, torch.Tensor]:
    return {k: v.detach().float() for k, v in out.items() if k != "tokens" and torch.is_tensor(v) and v.numel() == 1}


def _token_count(out: Mapping, batch: Mapping) -> torch.Tensor:
    if "tokens" in out:
        return torch.as_tensor(out["tokens"], dtype=torch.float32).detach().reshape(()).cpu()
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    return mask.sum().float().cpu() if torch.is_tensor(mask) else torch.zeros(())


def _reduce(accelerator, values: dict, how: str) -> dict:
    if not values:
        return {}
    names = list(values)
    stacked = torch.stack([torch.as_tensor(values[n], dtype=torch.float32).reshape(()).to(accelerator.device) for n in names])
    stacked = accelerator.reduce(stacked, how)
    return dict(zip(names, stacked.cpu()))


def _to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def accepts_state_dict(save_fn) -> bool:
    """Whether ``save_fn`` can be given the gathered weights as ``state_dict=``."""
    import inspect

    try:
        params = inspect.signature(save_fn).parameters
    except (TypeError, ValueError):
        return False
    return "state_dict" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _save_best(accelerator, model, save_fn, best_dir: Path) -> None:
    """``save_fn`` into a hidden folder, then swap it in, so ``best/`` is always whole.

    Sharded weights are first gathered (every process takes part) and written by the main
    process from the full state dict: its own module holds only a shard.
    """
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    full = full_state_dict(accelerator, model)
    if accelerator.is_main_process:
        tmp = best_dir.with_name(f".{best_dir.name}.tmp")
        old = best_dir.with_name(f".{best_dir.name}.old")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        was_training = unwrapped.training
        if full is None:
            save_fn(unwrapped, tmp)
        else:
            save_fn(unwrapped, tmp, state_dict=full)
        unwrapped.train(was_training)
        if best_dir.exists():
            best_dir.rename(old)
        tmp.rename(best_dir)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
