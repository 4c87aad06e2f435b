"""``ppsi train``: train the phase-difference CNN on any folder of speech (1 CPU, N procs, N GPUs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..config import ModelConfig, SolverConfig, TrainConfig, front_end
from . import app
from .common import err, fail, with_stft_options


def draw_event(event: dict) -> None:
    """Render one training event on stderr (module level, so spawned rank 0 can use it)."""
    kind = event.get("event")
    if kind == "step":
        err.print(f"step {event['step']:>7}  loss {event['loss']:+.4f}  lr {event['lr']:.2e}  "
                  f"{event['steps_per_s']:.2f} steps/s  ETA {event['eta_s'] / 60:.1f} min",
                  highlight=False)
    elif kind == "val":
        err.print(f"[cyan]step {event['step']:>7}  val loss {event['val_loss']:+.4f}[/]")
    elif kind == "eval":
        err.print(f"[green]step {event['step']:>7}  WB-PESQ {event['pesq']:.3f}  "
                  f"ESTOI {event['estoi']:.3f}[/]")
    elif kind == "start":
        err.print(f"training {event['parameters']} parameters on {event['device']} x "
                  f"{event['world']}: {event['train_files']} files ({event['train_minutes']} "
                  f"min), {event['val_files']} validation files, split {event['split']}, "
                  f"{event['skipped']} file(s) skipped", highlight=False)
        for line in event.get("skipped_files", []):
            err.print(f"[yellow]skipped[/] {escape(line)}", highlight=False)
        if not event["val_files"]:
            err.print("[yellow]notice[/] no validation file is usable: no validation loss "
                      "(give --val-data)", highlight=False)
    elif kind == "done":
        err.print(f"[bold]done at step {event['step']}[/]: {event['weights']}", highlight=False)


def parse_factors(text: str) -> tuple[float, ...]:
    """``"0.9,1,1.1"`` -> (0.9, 1.0, 1.1); empty -> (); anything else: ValueError."""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--speed-perturb: expected comma-separated numbers, got {text!r}") \
            from None


@app.command()
@with_stft_options
def train(
    data: Path = typer.Option(..., "--data", help="Folder tree of audio (wav, flac, ogg)."),
    out: Path = typer.Option(Path("runs/ppsi"), "-o", "--out", help="Run folder."),
    val_data: Optional[Path] = typer.Option(None, help="Validation audio (default: split)."),
    strided: bool = typer.Option(False, help="Train the strided (+1 hop look-ahead) variant."),
    delay: int = typer.Option(0, min=0, help="Frames of look-ahead: the pass at frame t "
                              "predicts frame t - DELAY (with --context 2*DELAY+1 it sees as "
                              "many frames after as before; DELAY hops more latency)."),
    max_steps: int = typer.Option(TrainConfig.max_steps, min=1),
    max_minutes: Optional[float] = typer.Option(None, help="Stop after this wall time."),
    stop_after: Optional[int] = typer.Option(None, min=1, help="Stop at this step (checkpoint "
                                             "kept; the schedule still runs to --max-steps)."),
    batch_size: int = typer.Option(TrainConfig.batch_size, min=1),
    segment_seconds: float = typer.Option(TrainConfig.segment_seconds),
    lr: float = typer.Option(TrainConfig.lr),
    loss_weight: str = typer.Option(TrainConfig.loss_weight,
                                    help="Von Mises loss weights per bin: "
                                    "none | magnitude | power."),
    fpd_weight: float = typer.Option(TrainConfig.fpd_weight,
                                     help="Share of the FPD term in the loss (BPD gets the rest)."),
    ls_loss: float = typer.Option(TrainConfig.ls_loss,
                                  help="Share of the teacher-forced least-squares phase loss "
                                  "(0: von Mises only)."),
    speed_perturb: str = typer.Option("", help="Comma-separated speed factors, e.g. "
                                      "0.9,1,1.1: each training segment is resampled to one of "
                                      "them at random (pitch, formants and tempo scale together)."),
    warmup_steps: int = typer.Option(TrainConfig.warmup_steps, min=1),
    seed: int = typer.Option(TrainConfig.seed),
    log_every: int = typer.Option(TrainConfig.log_every, min=1),
    val_every: int = typer.Option(TrainConfig.val_every, min=1),
    eval_every: int = typer.Option(TrainConfig.eval_every, min=0,
                                   help="Steps between WB-PESQ/ESTOI checks (0: never)."),
    ckpt_every: int = typer.Option(TrainConfig.ckpt_every, min=1),
    channels: int = typer.Option(ModelConfig.channels, min=1),
    blocks: int = typer.Option(ModelConfig.blocks, min=1),
    kernel_size: int = typer.Option(ModelConfig.kernel_size, min=1),
    context: int = typer.Option(ModelConfig.context, min=1),
    dilation_growth: int = typer.Option(ModelConfig.dilation_growth, min=1,
                                        help="Block i is dilated by this ** i along frequency."),
    p: float = typer.Option(SolverConfig.p, help="Least-squares weight exponent."),
    g: float = typer.Option(SolverConfig.g, help="Least-squares frequency weight."),
    gpus: int = typer.Option(0, min=0, help="Train on N GPUs (one process each, NCCL)."),
    procs: int = typer.Option(1, min=1, help="CPU processes (gloo), when not using GPUs."),
    resume: Optional[Path] = typer.Option(None, help="Checkpoint to continue from."),
    force: bool = typer.Option(False, "--force", help="Start over in a run folder that holds "
                               "a run (its weights and checkpoint are replaced)."),
    init_from: Optional[Path] = typer.Option(None, help="Start from these weights (an online "
                                             "model initialises a strided one)."),
    mel: Optional[str] = typer.Option(None, help="Train a mel network: its input is the NNLS "
                                      "magnitude of this mel front end (a preset: hifigan, "
                                      "vocos, librosa, torchaudio; +KEY=VALUE overrides); the "
                                      "preset's STFT is the default."),
    stft: dict = None,  # the STFT options, given by with_stft_options
) -> None:
    """Train the phase-difference CNN; writes OUT/weights.pt, checkpoints, config.json, train.log.

    The STFT options set the STFT it learns (audio resampled to --sample-rate); the weights
    file records it, and the network then serves that STFT family."""
    import torch

    from ..train import TrainError, launch

    if gpus > 0 and not torch.cuda.is_available():
        raise fail(f"--gpus {gpus}: CUDA is not available on this machine")
    if gpus > torch.cuda.device_count():
        raise fail(f"--gpus {gpus}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if out.exists() and not out.is_dir():
        raise fail(f"-o {out}: a file, not a run folder")
    held = [name for name in ("weights.pt", "checkpoint.pt") if (out / name).exists()]
    if held and resume is None and not force:
        raise fail(f"-o {out} holds a run ({held[0]}): --resume {out / 'checkpoint.pt'} "
                   "continues it, --force starts over (replacing it), or choose another -o")
    try:
        factors = parse_factors(speed_perturb)
        mel_cfg, stft_cfg = front_end(mel, stft)
        cfg = TrainConfig(
            data=str(data), out=str(out), val_data=str(val_data) if val_data else None,
            segment_seconds=segment_seconds, batch_size=batch_size, lr=lr,
            loss_weight=loss_weight, fpd_weight=fpd_weight, ls_loss=ls_loss,
            speed_factors=factors,
            warmup_steps=warmup_steps, max_steps=max_steps, max_minutes=max_minutes, seed=seed,
            stop_after=stop_after,
            log_every=log_every, val_every=val_every, eval_every=eval_every,
            ckpt_every=ckpt_every, device="cuda" if gpus else "cpu",
            init_from=str(init_from) if init_from else None,
            model=ModelConfig(context=context, channels=channels, kernel_size=kernel_size,
                              blocks=blocks, strided=strided,
                              dilation_growth=dilation_growth, delay=delay),
            stft=stft_cfg,
            solver=SolverConfig(p=p, g=g), mel=mel_cfg)
        launch(cfg, gpus or procs, str(resume) if resume else None, draw_event)
    except (TrainError, ValueError) as exc:
        raise fail(str(exc)) from None
