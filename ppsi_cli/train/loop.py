"""The training loop: one code path for 1 process, N CPU processes (gloo) or N GPUs (NCCL).

Progress is reported as plain dict events to an ``on_event`` callback (rank 0 only); the CLI
draws them. Rank 0 alone writes the log, checkpoints and the final ``weights.pt``.
"""

from __future__ import annotations

import copy
import gc
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import TrainConfig
from ..dsp.stft import stft
from ..model import PhaseDiffNet, count_parameters
from ..io import atomic_path, json_text
from ..weights import save_weights
from . import distributed as dist
from .data import Corpus, SegmentSampler, find_audio, load_corpus, split_files
from .objective import model_least_squares_loss, model_loss, network_magnitude, phase_targets

Event = dict[str, Any]
CHECKPOINT = "checkpoint.pt"


class TrainError(Exception):
    """A problem with the training inputs (data, resume), reported as one line."""


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to 1 % at ``max_steps``."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def find_data(cfg: TrainConfig) -> tuple[list[Path], list[Path], str]:
    """Find and split the training and validation files (nothing is read yet)."""
    root = Path(cfg.data)
    if not root.exists():
        raise TrainError(f"data folder not found: {root}")
    files = find_audio(root)
    if not files:
        raise TrainError(f"no audio files (.wav, .flac, .ogg) under {root}")
    if cfg.val_data:
        val_root = Path(cfg.val_data)
        val_files = find_audio(val_root)
        if not val_files:
            raise TrainError(f"no audio files under --val-data {val_root}")
        train_files, how = files, f"--val-data {val_root}"
    else:
        train_files, val_files, how = split_files(files, root, cfg.val_fraction, cfg.seed)
    return train_files, val_files, how


def prepare_data(cfg: TrainConfig) -> tuple[Corpus, Corpus, str]:
    """Find, split and load the training and validation audio."""
    train_files, val_files, how = find_data(cfg)
    sr = cfg.stft.sample_rate
    train = load_corpus(train_files, sr, min_samples=cfg.stft.win_length)
    val = load_corpus(val_files, sr, min_samples=cfg.stft.win_length)
    if not train.audio:
        path, why = train.skipped[0] if train.skipped else (cfg.data, "")
        raise TrainError(f"none of the {len(train_files)} training files under {cfg.data} "
                         f"can be used (first: {path}: {why})")
    return train, val, how


class Trainer:
    """Holds model, optimiser, schedule and data for one rank."""

    def __init__(self, cfg: TrainConfig, info: dist.DistInfo, device: torch.device,
                 train: Corpus, val: Corpus):
        self.cfg, self.info, self.device = cfg, info, device
        torch.manual_seed(cfg.seed)
        self.net = PhaseDiffNet(cfg.model)
        if cfg.init_from:
            init_from_weights(self.net, cfg.init_from)
        self.net.to(device)
        self.model = self.net
        if info.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
            # the convolutions run channels-last (model.py), so their weight gradients do not
            # match the buckets' strides and DDP copies them: for 8k parameters that costs
            # nothing, and its multi-line warning per process would bury the training lines
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        self.opt = torch.optim.RAdam(self.net.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.step = 0
        seg = int(round(cfg.segment_seconds * cfg.stft.sample_rate))
        self.sampler = SegmentSampler(train.audio, seg, cfg.batch_size, cfg.seed, info.rank,
                                      info.world, cfg.speed_factors)
        self.val = val
        self.val_batches = self._val_batches(val, seg)
        self.amp = cfg.amp and device.type == "cuda"

    def _val_batches(self, val: Corpus, seg: int) -> list[np.ndarray]:
        if not val.audio:
            return []
        sampler = SegmentSampler(val.audio, seg, self.cfg.batch_size, seed=12345)
        n = min(8, sampler.steps_per_epoch)
        return [sampler.batch(i) for i in range(n)]

    def loss_on(self, audio: np.ndarray, model: torch.nn.Module) -> torch.Tensor:
        x = torch.from_numpy(audio).to(self.device)
        logmag, b, f, w_b, w_f = phase_targets(x, self.cfg.stft, self.cfg.loss_weight,
                                               self.cfg.mel)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = model(logmag)
        loss = model_loss(out.float(), b, f, w_b, w_f, self.cfg.model.strided,
                          self.cfg.fpd_weight, self.cfg.model.delay)
        share = self.cfg.ls_loss
        if share > 0:
            spec = stft(x, self.cfg.stft)
            ls = model_least_squares_loss(out.float(), spec, self.cfg.stft, self.cfg.solver,
                                          self.cfg.model.strided,
                                          network_magnitude(spec, self.cfg.stft, self.cfg.mel),
                                          self.cfg.model.delay)
            loss = (1 - share) * loss + share * ls
        return loss

    def train_step(self) -> float:
        self.model.train()
        loss = self.loss_on(self.sampler.batch(self.step), self.model)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return loss.item()

    @torch.no_grad()
    def val_loss(self) -> float:
        self.net.eval()
        if not self.val_batches:
            return float("nan")
        return float(np.mean([self.loss_on(b, self.net).item() for b in self.val_batches]))

    @torch.no_grad()
    def eval_quality(self) -> dict[str, float]:
        """WB-PESQ / ESTOI of the network and its least squares (no refinement, also for a
        look-ahead network) on the first validation files."""
        from ..inverter import Inverter
        from ..methods import BY_VARIANT
        from ..metrics import estoi, pesq_wb
        from ..weights import LoadedModel, model_variant

        net = copy.deepcopy(getattr(self.net, "module", self.net)).cpu().eval()
        scfg, sr = self.cfg.stft, self.cfg.stft.sample_rate
        model = LoadedModel(net, scfg, self.cfg.solver)
        inv = Inverter(BY_VARIANT[model_variant(model)], refine=0, model=model)
        pesqs, estois = [], []
        for audio in self.val.audio[: self.cfg.eval_files]:
            x = torch.from_numpy(audio[: 8 * sr]).double()
            y = inv(network_magnitude(stft(x, scfg), scfg, self.cfg.mel), len(x)).numpy()
            try:
                pesqs.append(pesq_wb(x.numpy(), y, sr))
                estois.append(estoi(x.numpy(), y, sr))
            except Exception:  # a file that cannot be scored is left out of the mean
                continue
        return {"pesq": float(np.mean(pesqs)) if pesqs else float("nan"),
                "estoi": float(np.mean(estois)) if estois else float("nan")}

    def state(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "step": self.step,
                "config": self.cfg.to_dict()}

    def load_state(self, ckpt: dict[str, Any]) -> None:
        self.net.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])


def init_from_weights(net: PhaseDiffNet, path: str) -> None:
    """Start from a trained model's weights; an online head initialises both halves of a
    strided head (frames t-1 and t), which makes fine-tuning the strided variant cheap; a model
    with more look-ahead (a longer delay) gets the source's frame channels at the frames they
    saw (shifted by the difference of the delays; those beyond its context dropped), the
    others zero."""
    from ..weights import load_weights

    try:
        src_net = load_weights(path).net
    except (FileNotFoundError, ValueError) as exc:
        raise TrainError(f"--init-from: {exc}") from None
    if src_net.cfg.dilations != net.cfg.dilations:
        raise TrainError(f"--init-from {path}: its blocks are dilated {src_net.cfg.dilations}, "
                         f"this model's {net.cfg.dilations} (set --dilation-growth "
                         f"{src_net.cfg.dilation_growth})")
    src = src_net.state_dict()
    dst = net.state_dict()
    for name, value in src.items():
        if name not in dst:
            raise TrainError(f"--init-from {path}: layer {name} does not exist in this model")
        if dst[name].shape == value.shape:
            dst[name] = value
        elif name.startswith("head.") and dst[name].shape[0] == 2 * value.shape[0]:
            dst[name] = torch.cat([value, value])
        elif (name == "stem.weight" and net.cfg.delay >= src_net.cfg.delay
              and dst[name].shape[0] == value.shape[0] and dst[name].shape[2:] == value.shape[2:]):
            d = net.cfg.delay - src_net.cfg.delay
            n = min(value.shape[1], dst[name].shape[1] - d)
            dst[name] = torch.zeros_like(dst[name])
            dst[name][:, d:d + n] = value[:, :n]
        else:
            raise TrainError(f"--init-from {path}: layer {name} has shape "
                             f"{tuple(value.shape)}, this model needs {tuple(dst[name].shape)}")
    net.load_state_dict(dst)


def _compatible(saved: dict[str, Any], cfg: TrainConfig) -> str | None:
    """Why a checkpoint cannot continue this run, or None."""
    for key in ("model", "stft"):
        if saved.get(key) != cfg.to_dict()[key]:
            return f"its {key} config {saved.get(key)} differs from this run's {cfg.to_dict()[key]}"
    return None


def load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    if not path.is_file():
        raise TrainError(f"--resume: no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainError(f"--resume: {path} is not a readable checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "step", "config"} <= set(ckpt):
        raise TrainError(f"--resume: {path} is not a ppsi training checkpoint")
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise TrainError(f"--resume: {path}: its config or model state is not a mapping")
    why = _compatible(ckpt["config"], cfg)
    if why:
        raise TrainError(f"--resume: incompatible checkpoint {path}: {why}")
    return ckpt


def _save_checkpoint(trainer: Trainer, out: Path) -> None:
    with atomic_path(out / CHECKPOINT) as tmp:  # a killed run leaves no half checkpoint
        torch.save(trainer.state(), tmp)


def run(cfg: TrainConfig, resume: str | None = None,
        on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
    """Train on this process (joining the group named by the environment, if any)."""
    device = torch.device("cuda" if cfg.device == "cuda" else "cpu")
    info = dist.init(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    out = Path(cfg.out)
    emit = on_event if (on_event and info.is_main) else (lambda e: None)
    log_file = None
    try:
        train, val, how = prepare_data(cfg)
        trainer = Trainer(cfg, info, device, train, val)
        if resume:
            try:
                trainer.load_state(load_checkpoint(Path(resume), cfg))
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise TrainError(f"--resume: {resume}: its state does not fit this model "
                                 f"({why})") from None
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json_text(cfg.to_dict()))
            log_file = open(out / "train.log", "a")

        def log(event: Event) -> None:
            emit(event)
            if log_file:
                log_file.write(json_text({"time": round(time.time(), 1), **event}, None) + "\n")
                log_file.flush()

        log({"event": "start", "step": trainer.step, "world": info.world,
             "device": str(device), "parameters": count_parameters(trainer.net),
             "train_files": len(train.audio), "train_minutes": round(train.seconds / 60 /
                                                                       cfg.stft.sample_rate, 2),
             "val_files": len(val.audio), "split": how,
             "skipped": len(train.skipped) + len(val.skipped),
             "skipped_files": [f"{path}: {why}" for path, why in train.skipped + val.skipped],
             "max_steps": cfg.max_steps})
        start, t_last, s_last = time.time(), time.time(), trainer.step
        losses: list[float] = []
        while trainer.step < cfg.max_steps:
            losses.append(trainer.train_step())
            step = trainer.step
            timed_out = cfg.max_minutes is not None and (time.time() - start) > 60 * cfg.max_minutes
            stop = dist.any_rank(timed_out, device) or step == cfg.stop_after
            if step % cfg.log_every == 0 or stop or step == cfg.max_steps:
                now = time.time()
                rate = (step - s_last) / max(now - t_last, 1e-9)
                loss = dist.all_mean(float(np.mean(losses)), device)
                log({"event": "step", "step": step, "loss": round(loss, 5),
                     "lr": trainer.sched.get_last_lr()[0], "steps_per_s": round(rate, 3),
                     "eta_s": round((cfg.max_steps - step) / max(rate, 1e-9), 1)})
                losses, t_last, s_last = [], now, step
            if info.is_main and step % cfg.val_every == 0:
                log({"event": "val", "step": step, "val_loss": round(trainer.val_loss(), 5)})
            if info.is_main and cfg.eval_every and step % cfg.eval_every == 0:
                log({"event": "eval", "step": step, **trainer.eval_quality()})
            if info.is_main and (step % cfg.ckpt_every == 0 or stop or step == cfg.max_steps):
                _save_checkpoint(trainer, out)
                log({"event": "checkpoint", "step": step})
            if stop:
                break
        result: dict[str, Any] = {"step": trainer.step,
                                  "rank_checksums": _rank_checksums(trainer.net, device)}
        if info.is_main:
            result["val_loss"] = trainer.val_loss()
            meta = {"steps": trainer.step, "train_minutes": round(train.seconds / 60 /
                                                                   cfg.stft.sample_rate, 2),
                    "wall_seconds": round(time.time() - start, 1), "world": info.world,
                    "device": device.type, "data": str(cfg.data)}
            if cfg.mel is not None:  # a mel network: its input is the NNLS magnitude of this mel
                meta["mel"] = cfg.mel.to_dict()
            save_weights(out / "weights.pt", trainer.net, cfg.stft, cfg.solver, meta)
            log({"event": "done", **result, "weights": str(out / "weights.pt")})
        dist.barrier()
        return result
    finally:
        if log_file:
            log_file.close()
        # the DDP model (its reducer holds the group's work) goes before the process group: in
        # one of about ten full test runs, torch 2.13's gloo aborted a rank at exit
        # ("terminate called without an active exception") with the model freed after it
        trainer = None
        gc.collect()
        dist.shutdown()


def _rank_checksums(net: torch.nn.Module, device: torch.device) -> list[float]:
    """A checksum of the parameters from every rank (they must be identical under DDP)."""
    total = sum(float(p.detach().double().sum()) + float((p.detach().double() ** 2).sum())
                for p in net.parameters())
    if not torch.distributed.is_initialized():
        return [total]
    t = torch.tensor([total], dtype=torch.float64, device=device)
    out = [torch.zeros_like(t) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(out, t)
    return [x.item() for x in out]


def _spawned(cfg_dict: dict[str, Any], resume: str | None, on_event) -> None:
    run(TrainConfig.from_dict(cfg_dict), resume, on_event)


def launch(cfg: TrainConfig, nprocs: int = 1, resume: str | None = None,
           on_event: Callable[[Event], None] | None = None) -> dict[str, Any] | None:
    """Run training in ``nprocs`` local processes (``--gpus``/``--procs``), or in this one.

    Under ``torchrun`` (WORLD_SIZE set) this process already is one rank: run directly.
    """
    if nprocs <= 1 or dist.env_info().world > 1:
        return run(cfg, resume, on_event)
    if cfg.device == "cuda" and torch.cuda.device_count() < nprocs:
        raise TrainError(f"--gpus {nprocs} asked for, but {torch.cuda.device_count()} CUDA "
                         "device(s) are visible")
    # errors in the data show up once, here, before any process is spawned
    find_data(cfg)
    dist.spawn(_spawned, (cfg.to_dict(), resume, on_event), nprocs)
    return None
