"""The training loop: optimiser, per-step warmup + cosine schedule, AMP on CUDA, progress bars, JSON-lines metrics,
atomic checkpoints and exact resume.

Determinism: every epoch draws its permutation from a generator seeded with ``(seed, epoch)`` and its augmentations
from one seeded with ``(seed, epoch, rank)``; a checkpoint stores model, optimiser, scheduler, AMP scaler, the
global RNG states (as tensors) and the metrics history. A run stopped after epoch k and resumed therefore ends with
the same weights as an uninterrupted run (bit for bit on the same machine and device).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..checks import trusted
from . import checkpoint, rng
from .config import Config
from .data import TensorData
from .domain_alignment import domain_alignment_term
from .ddp import DistInfo, barrier, mean_over_ranks, prepare_model, resolve_device, shard, unwrap
from .fingerprint import differences, run_fingerprint
from .optim import build_optimiser
from .schedule import warmup_cosine

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
#: The run's fingerprint, written when a run starts: a folder holds the files of one run only.
RUN_FILE = "run.json"
LOGGER = logging.getLogger(__name__)


class Trainer:
    """Trains an :class:`~otalign.training.models.SSLModel` on in-memory data.

    Args:
        config: the run's settings (epochs, batch size, optimiser, seed, output folder...).
        model: the model (``model(x0, x1, labels=...)`` returns the loss); seed before building it.
        data: training tensors and the view maker.
        info, device: from :func:`otalign.training.ddp.setup` (default: one process on ``config.device``
            resolved to CUDA when available).

    Progress (rank 0 only): a tqdm bar when stderr is a terminal, otherwise one line per epoch through the
    ``logging`` logger ``"otalign.training.trainer"`` (INFO; DEBUG when ``config.quiet``, which also hides the bar).
    A step whose loss is not finite (diverged weights or embeddings, or a non-finite batch) raises
    ``FloatingPointError`` naming the epoch and step.

    Files (rank 0 only) in ``config.out``: ``run.json`` (the run's fingerprint, :mod:`.fingerprint`),
    ``metrics.jsonl`` (one JSON object per epoch: epoch, loss, lr, seconds) and ``checkpoint.pt`` (every
    ``checkpoint_every`` epochs, at the end, and when stopped early). A folder that holds another run's files, or a
    checkpoint written by another run, is an error naming what differs: nothing is overwritten or resumed by
    mistake.

    Example::

        >>> seed_everything(config.seed)
        >>> model = build_model(config, encoder, projector)
        >>> history = Trainer(config, model, data).fit()
    """

    def __init__(
        self,
        config: Config,
        model: nn.Module,
        data: TensorData,
        info: Optional[DistInfo] = None,
        device: Optional[torch.device] = None,
    ):
        self.config = config
        self.info = info or DistInfo()
        self.device = device or resolve_device(config.device, self.info.local_rank)
        self.data = data
        self.out = Path(config.out)
        world = self.info.world_size
        n = data.train_x.shape[0]
        self.batch_size = min(config.batch_size, n - n % world)
        if self.batch_size < 2 * world:
            raise ValueError(f"batch_size: need at least 2 samples per process, got {n} training samples for {world}")
        self.batch_size -= self.batch_size % world
        self.steps_per_epoch = n // self.batch_size
        self.total_steps = config.epochs * self.steps_per_epoch
        self.model = prepare_model(model, self.info, self.device)
        self.optimiser = build_optimiser(
            config.optimiser, unwrap(self.model), config.lr, config.weight_decay, config.momentum
        )
        warmup = min(config.warmup_epochs * self.steps_per_epoch, self.total_steps // 2)  # at most half the steps
        self.scheduler = warmup_cosine(self.optimiser, self.total_steps, warmup)
        self.amp_dtype = _amp_dtype(self.device) if config.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.fingerprint = run_fingerprint(config, data, unwrap(self.model))
        self.alignment = domain_alignment_term(config, tuple(data.train_meta))

    # ------------------------------------------------------------------------------------------------ public
    def fit(self, stop_after: Optional[int] = None) -> list[dict[str, Any]]:
        """Train until ``config.epochs`` (or until epoch ``stop_after``, then checkpoint and return); resume from
        ``out/checkpoint.pt`` first when ``config.resume`` and it exists. Returns the per-epoch history."""
        self._claim_folder()
        if self.config.resume and (self.out / CHECKPOINT).is_file():
            self.load(self.out / CHECKPOINT)
            if self.info.is_main:
                print(f"resuming {self.out} from epoch {self.epoch}", file=sys.stderr)
        if self.info.is_main:
            _write_json_lines(self.out / METRICS, self.history)
        last = self.config.epochs if stop_after is None else min(stop_after, self.config.epochs)
        show = self.info.is_main and not self.config.quiet and sys.stderr.isatty()
        bar = _progress(self.config.epochs, self.epoch, show, f"{self.config.method}")
        try:
            while self.epoch < last:
                record = self._train_epoch()
                self.history.append(record)
                if self.info.is_main:
                    _append_json_line(self.out / METRICS, record)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
                    bar.update(1)
                elif self.info.is_main:
                    self._log_epoch(record)
                every = self.config.checkpoint_every
                end = self.epoch == self.config.epochs and every > 0
                if (every and self.epoch % every == 0) or end or self.epoch == stop_after:
                    self.save(self.out / CHECKPOINT)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as tensors and plain containers."""
        return {
            "format": 2,
            "fingerprint": dict(self.fingerprint),
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "model": unwrap(self.model).state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng.capture(),
            "history": list(self.history),
        }

    def save(self, path: Path) -> None:
        """Atomically write :meth:`state_dict` (rank 0), then wait for every process."""
        if self.info.is_main:
            checkpoint.save_atomic(self.state_dict(), path)
        barrier(self.info)

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save`; it must have been written by this run: same fingerprint
        (settings, data, target rule, code version; see :mod:`.fingerprint` for the settings that may differ)."""
        state = checkpoint.load(path, map_location="cpu")  # RNG states must stay on the CPU; modules copy over
        self._check_same_run(state.get("fingerprint", {}), f"the checkpoint at {str(path)!r}")
        try:
            unwrap(self.model).load_state_dict(state["model"])
            self.optimiser.load_state_dict(state["optimiser"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            rng.restore(state["rng"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.history = list(state["history"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
            what = (f"lacks the entry {error}" if isinstance(error, KeyError)
                    else f"holds state this run cannot restore ({type(error).__name__})")
            raise ValueError(checkpoint.unreadable(path, what)) from error

    def _check_same_run(self, saved: dict[str, Any], what: str) -> None:
        found = differences(saved, self.fingerprint)
        if found:
            raise ValueError(
                f"resume: {what} belongs to another run ({'; '.join(found)}); use another output folder (--out), "
                f"or delete that folder's files to start over"
            )

    def _claim_folder(self) -> None:
        """Write ``run.json`` with this run's fingerprint, refusing a folder that holds another run's files."""
        path = self.out / RUN_FILE
        if self.info.is_main:
            if path.is_file():
                self._check_same_run(json.loads(path.read_text()), f"the folder {str(self.out)!r}")
            elif (self.out / METRICS).is_file() or (self.out / CHECKPOINT).is_file():
                raise ValueError(f"resume: the folder {str(self.out)!r} holds files of a run without a fingerprint; "
                                 f"use another output folder (--out)")
            self.out.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text_atomic(path, json.dumps(self.fingerprint, indent=2))
        barrier(self.info)

    # ------------------------------------------------------------------------------------------------ loop
    def _train_epoch(self) -> dict[str, Any]:
        config, info = self.config, self.info
        start = time.perf_counter()
        order = torch.randperm(
            self.data.train_x.shape[0], generator=rng.generator(rng.derived_seed(config.seed, self.epoch))
        )
        views_generator = rng.generator(rng.derived_seed(config.seed, self.epoch, info.rank + 1))
        self.model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        aligned = torch.zeros((), dtype=torch.float64, device=self.device)
        batches = shard(order, info, self.batch_size)
        for index in batches:
            index = index.to(self.data.train_x.device)
            x = self.data.train_x[index].to(self.device, non_blocking=True)
            labels = self.data.train_y[index].to(self.device, non_blocking=True)
            meta = {key: value[index].to(self.device) for key, value in self.data.train_meta.items()}
            x0, x1 = self.data.views(x, views_generator)
            autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                        else nullcontext())
            try:
                with autocast, trusted(), self._features() as features:  # the loss skips its value checks: this
                    loss = self.model(x0, x1, labels=labels, meta=meta)  # step's loss is checked instead
                if self.alignment is not None:
                    term = self._alignment_term(features, meta)
                    loss = loss + term
                    aligned += term.detach()
            except (FloatingPointError, ValueError) as error:  # e.g. a solver fed the NaN cost of NaN embeddings
                raise self._diverged(x0, x1, None) or error  # not a divergence: the error as it was
            if not torch.isfinite(loss.detach()):
                raise self._diverged(x0, x1, loss)
            self.optimiser.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            unwrap(self.model).step_end(self.step / self.total_steps)
            total += loss.detach()
        self.epoch += 1
        mean_loss = mean_over_ranks(float(total.item()) / max(1, len(batches)), info, self.device)
        record = {
            "epoch": self.epoch,
            "loss": mean_loss,
            "lr": float(self.scheduler.get_last_lr()[0]),
            "seconds": time.perf_counter() - start,
        }
        if self.alignment is not None:  # the term's share of the loss
            record["domain_alignment"] = mean_over_ranks(float(aligned.item()) / max(1, len(batches)), info,
                                                         self.device)
        return record

    @contextmanager
    def _features(self):
        """While active, the outputs of the encoder's calls are appended to the yielded list (only with a domain
        alignment term, which reads the first: the features of the batch's views)."""
        captured: list[torch.Tensor] = []
        if self.alignment is None:
            yield captured
            return
        handle = unwrap(self.model).encoder.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            yield captured
        finally:
            handle.remove()

    def _alignment_term(self, captured: list[torch.Tensor], meta: dict[str, torch.Tensor]) -> torch.Tensor:
        """The domain-alignment term of a batch from the encoder's first output: the features of both views
        (``(2 N, k)``, view-blocked) or of one (``(N, k)``)."""
        if not captured:
            raise ValueError(f"domain_alignment: method {self.config.method!r} never called its encoder")
        features, domains = captured[0], meta["domain"]
        if features.shape[0] == 2 * domains.shape[0]:
            domains = torch.cat([domains, domains])
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.alignment(features.reshape(features.shape[0], -1), domains)

    def _diverged(self, x0: Any, x1: Any, loss: Optional[torch.Tensor]) -> Optional[FloatingPointError]:
        """The error for a step that produced a non-finite ``loss`` (or raised ``FloatingPointError``, ``loss=None``):
        a non-finite batch, or a diverged model (NaN/inf embeddings, e.g. after a too-large step). ``None`` when
        neither explains a raised error. Runs only on failure: it recomputes the embeddings once."""
        where = f"at epoch {self.epoch + 1}, step {self.step + 1}"
        for x in (x0, x1):
            if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
                return FloatingPointError(f"x: the training batch {where} contains NaN or inf (the data or its views)")
        hint = f"try a lower lr (now {self.scheduler.get_last_lr()[0]:.3g}) or a larger temperature"
        with torch.no_grad():
            embeddings = unwrap(self.model).project_pair(x0, x1)
        if not all(bool(torch.isfinite(z).all()) for z in embeddings):
            return FloatingPointError(f"embeddings: NaN or inf {where}: the training diverged; {hint}")
        if loss is None:
            return None
        return FloatingPointError(f"loss: {self.config.method} returned {loss.item()} {where}; {hint}")

    def _log_epoch(self, record: dict[str, Any]) -> None:
        level = logging.DEBUG if self.config.quiet else logging.INFO
        LOGGER.log(level, "%s epoch %d/%d: loss %.4f, lr %.2e, %.1f s", self.config.method, record["epoch"],
                   self.config.epochs, record["loss"], record["lr"], record["seconds"])


def _amp_dtype(device: torch.device) -> Optional[torch.dtype]:
    """Mixed precision on CUDA only: bfloat16 when supported, else float16 (with gradient scaling)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _write_json_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Start ``path`` afresh with ``records`` (a resumed run's history; empty for a new run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _append_json_line(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as stream:
        stream.write(json.dumps(record) + "\n")


def _progress(total: int, initial: int, show: bool, description: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="epoch", leave=False)

