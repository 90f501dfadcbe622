"""The training loop: phases of an objective over in-memory data, ticks, snapshots, resume."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import resource
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridgan.hybrid import checkpoint as ckpt_io
from hybridgan.hybrid.devices import CPUThreads, check_precision, resolve_device, resolve_precision
from hybridgan.hybrid.errors import Interrupted, RunError, TrainingDiverged, UserError
from hybridgan.hybrid.images import image_grid, save_png, scatter_png
from hybridgan.hybrid.model import Model
from hybridgan.hybrid.runfiles import append_jsonl, duration, provenance
from hybridgan.hybrid.samplers import default_sampling, sample_batched
from hybridgan.training import distributed
from hybridgan.training.config import TrainConfig, config_from_dict, lr_scale, resolve, with_model_overrides
from hybridgan.training.data import Dataset, class_shares, load_dataset
from hybridgan.training.objectives import OBJECTIVES, Objective
from hybridgan.training.rundir import Console, RunDir, next_run_dir
from hybridgan.training.stats import Stats

# Options that may change when a run is resumed; everything else must match the checkpoint.
RESUMABLE = ("kimg", "minutes", "device", "tick_kimg", "snapshot_kimg", "eval_kimg", "metrics", "extractor", "eval_num", "precision",
             "compile", "teacher")  # a moved teacher: its SHA-256 must still match (training.teacher)


def compile_networks(nets: list[torch.nn.Module | None], device: torch.device, console: Console) -> bool:
    """torch.compile the networks in place; False (and one console line) where compilation cannot run.

    In place (`nn.Module.compile`), so parameter names, state_dicts and checkpoints stay those of
    the plain modules (no `_orig_mod.` prefix) and `Model.update_ema` pairs parameters as before.
    Compilation itself is lazy (the first step of each graph); a probe function compiled and run
    on the training device first catches what fails for every graph alike: no C++ compiler, an
    unsupported Python or platform.
    """
    try:
        _compile_probe(device)
    except Exception as e:  # noqa: BLE001 - any failure of the compiler stack means: train uncompiled
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        console(f"--compile: torch.compile cannot run here ({type(e).__name__}: {reason[:160]}); training uncompiled")
        return False
    for net in nets:
        if net is not None:
            net.compile()
    return True


def _compile_probe(device: torch.device) -> None:
    probe = torch.compile(lambda x: torch.nn.functional.silu(x) * 2 + 1)
    probe(torch.ones(8, device=device))


@dataclass
class Progress:
    nimg: int = 0
    step: int = 0
    tick: int = 0
    seconds: float = 0.0  # training wall time, summed over resumed sessions
    past_nimg: list[int] = field(default_factory=list)  # when each generator of Model.past was copied, newest first


class Trainer:
    """Owns the model, optimisers, data and run directory of one training run."""

    clock = staticmethod(time.perf_counter)  # seconds; the time budget (`minutes`) and img/s read it

    def __init__(self, cfg: TrainConfig, run: RunDir, data: Dataset, console: Console,
                 inputs: Mapping[str, Any] | None = None) -> None:
        """inputs: what the objective read before the run started (`Objective.prepare`); read here when None."""
        self.run, self.data, self.console = run, data, console
        self.device = distributed.local_device(resolve_device(cfg.device))
        self.cfg = cfg
        self.autocast_dtype = resolve_precision(cfg.precision, self.device, data.is_image)
        # One process on the CPU follows the idle cores; torchrun's processes keep torch's default.
        self.threads = CPUThreads(enabled=self.device.type == "cpu" and distributed.world_size() == 1)
        torch.manual_seed(cfg.seed)
        self.model = Model(cfg.model).to(self.device)
        if self.device.type == "cpu" and data.is_image and self.model.D is not None:
            # oneDNN runs the conv discriminator (no normalisation layers) faster in NHWC: the
            # digits step took 11% less CPU time. Not the generator: its group norms are slow in NHWC.
            self.model.D.to(memory_format=torch.channels_last)
        distributed.broadcast_state(self.model)
        self.compiled = cfg.compile and compile_networks([self.model.G, self.model.D], self.device, console)
        self._running_buffers = distributed.running_buffers(self.model)
        self.stats = Stats()
        kind = OBJECTIVES[cfg.objective]
        if inputs is None:
            inputs = kind.prepare(cfg, tuple(data.shape), resumed=True)[1]
        self.objective: Objective = kind.build(self.model, self.stats, cfg, **inputs)
        for net in self.objective.networks.values():  # distill's discriminator heads start random: rank 0's on every rank
            distributed.broadcast_state(net)
        # The networks phases train: the model's, and the objective's own (distill's fake denoiser).
        self.nets: dict[str, torch.nn.Module] = {"G": self.model.G}
        if self.model.D is not None:
            self.nets["D"] = self.model.D
        self.nets.update(self.objective.networks)
        # Fused Adam: one kernel for all parameters, also on the CPU (3.7x faster there than
        # the per-parameter loop for the digits generator; same results to float rounding).
        self.opts = {name: torch.optim.Adam(net.parameters(), lr=self._base_lr(name), betas=cfg.betas, fused=True)
                     for name, net in self.nets.items()}
        # Listed once: walking the modules for them took ~0.2 ms a time, several times a step.
        self._params = {name: list(net.parameters()) for name, net in self.nets.items()}
        self._trainable: dict[str, bool] = {}  # requires_grad as `_train_only` last set it, per network
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.progress = Progress()
        self.budget_used = 0.0  # of kimg or minutes; updated after every step (`_finished`)
        self.signal_received: int | None = None  # set by the signal handler, at any moment
        self.stop_signal: int | None = None  # the signal all ranks agreed to stop on
        self._writer = None
        self._final_values: dict[str, float] | None = None  # the last metrics, else the last tick's losses

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        rng = {"train": self.gen.get_state(), "data": self.data_gen.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, "config": self.cfg.to_dict(),
            "G": self.model.G.state_dict(), "G_ema": self.model.G_ema.state_dict(),
            "G_past": [net.state_dict() for net in self.model.past],
            "progress": {**vars(self.progress), "past_nimg": list(self.progress.past_nimg)}, "rng": rng,
            "opt": {name: opt.state_dict() for name, opt in self.opts.items()},
        }
        if self.model.D is not None:
            state["D"] = self.model.D.state_dict()
        if self.model.frozen is not None:
            state["frozen"] = self.model.frozen.state_dict()
        if self.objective.networks:
            state["nets"] = {name: net.state_dict() for name, net in self.objective.networks.items()}
        objective_state = self.objective.state_dict()
        if objective_state:
            state["objective"] = objective_state
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.G.load_state_dict(state["G"])
        self.model.G_ema.load_state_dict(state["G_ema"])
        self.model.load_past(state.get("G_past", []))
        if self.model.D is not None:
            self.model.D.load_state_dict(state["D"])
        if self.model.frozen is not None:
            self.model.frozen.load_state_dict(state["frozen"])
        for name, net in self.objective.networks.items():
            net.load_state_dict(state["nets"][name])
        self.objective.load_state_dict(state.get("objective", {}))
        for name, opt in self.opts.items():
            opt.load_state_dict(state["opt"][name])
        self.progress = Progress(**state["progress"])
        self.gen.set_state(state["rng"]["train"])
        self.data_gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    # ----------------------------------------------------------------------------- loop

    @property
    def total_nimg(self) -> int:
        return round(self.cfg.kimg * 1000)

    def train(self) -> None:
        cfg = self.cfg
        limit = f" or {cfg.minutes:g} minutes" if cfg.minutes > 0 else ""
        self.console(f"training {cfg.objective} on {cfg.data} {tuple(self.data.shape)} for {cfg.kimg:g} kimg{limit}, "
                     f"batch {cfg.batch}, device {self.device}, precision {cfg.precision}"
                     + (", compiled" if self.compiled else ""))
        self.console(f"generator {_count(self.model.G)/1e6:.2f}M parameters"
                     + (f", discriminator {_count(self.nets['D'])/1e6:.2f}M" if "D" in self.nets else ""))
        self.console(self.threads.start())
        self._tick_start = (self.clock(), self.progress.nimg)
        next_tick = self._next_multiple(cfg.tick_kimg)
        next_snapshot = self._next_multiple(cfg.snapshot_kimg)
        next_eval = self._next_multiple(cfg.eval_kimg) if cfg.eval_kimg > 0 else math.inf
        with self._signals(), self._bar() as bar, self.threads:
            done = self._finished()
            while not done:
                if self._memory_due():
                    self.remember()
                self.step()
                if change := self.threads.poll():
                    self.console(change)
                self.stop_signal = distributed.any_rank(self.signal_received)  # all ranks stop at the same step
                bar.update(cfg.batch)
                done = self._finished()
                snapshot_due = self.progress.nimg >= next_snapshot or done or self.stop_signal
                if self.progress.nimg >= next_tick or snapshot_due:
                    self.tick(bar)  # checks the losses are finite before any snapshot is written
                    next_tick = self._next_multiple(cfg.tick_kimg)
                if snapshot_due:
                    self.snapshot()
                    next_snapshot = self._next_multiple(cfg.snapshot_kimg)
                if cfg.metrics and (self.progress.nimg >= next_eval or done):
                    self.evaluate()
                    next_eval = self._next_multiple(cfg.eval_kimg) if cfg.eval_kimg > 0 else math.inf
                if self.stop_signal:
                    raise Interrupted(self.stop_signal)
        distributed.on_main(self._write_hparams)
        self.console(f"done: {self.progress.nimg / 1000:.1f} kimg in {self.progress.seconds:.0f} s; run directory {self.run.path}")

    def _write_hparams(self) -> None:
        """TensorBoard's HParams tab: the run's main options beside its final metrics (or losses)."""
        cfg = self.cfg
        options = {"objective": cfg.objective, "data": cfg.data, "batch": cfg.batch, "lr_g": cfg.lr_g, "lr_d": cfg.lr_d,
                   "kimg": cfg.kimg, "steps": cfg.model.steps, "schedule": cfg.model.schedule,
                   "denoise_weight": cfg.denoise_weight, "r1_gamma": cfg.r1_gamma, "ema_kimg": cfg.ema_kimg,
                   "seed": cfg.seed, "precision": cfg.precision}
        final = self._final_values or {}
        if final:
            self.writer().add_hparams({k: v for k, v in options.items() if v is not None},
                                      {f"final/{k}": v for k, v in final.items() if math.isfinite(v)}, run_name=".")

    def _finished(self) -> bool:
        """`kimg` images shown, or `minutes` of training time spent."""
        self.budget_used = self._budget_used()
        return self.budget_used >= 1

    def _budget_used(self) -> float:
        """The share of the run's budget spent: images shown of `kimg` or training time of
        `minutes`, whichever is further on. Time is the slowest rank's, so every rank stops, and
        decays its learning rate, at the same step."""
        used = self.progress.nimg / self.total_nimg if self.total_nimg > 0 else math.inf
        if self.cfg.minutes > 0:
            used = max(used, distributed.max_over_ranks(self.progress.seconds) / (self.cfg.minutes * 60))
        return used

    def _memory_due(self) -> bool:
        """Whether G_ema is due to be copied for the mixture: once per multiple of mixture_kimg, at
        the first step from it. Copies are taken before a step, after any checkpoint, so a run
        resumed from that checkpoint takes the same copies as one never stopped."""
        if self.cfg.mixture <= 1:
            return False
        last = self.progress.past_nimg[0] if self.progress.past_nimg else 0
        return self.progress.nimg >= self._next_multiple(self.cfg.mixture_kimg, after=last)

    def remember(self) -> None:
        keep = self.cfg.mixture - 1
        self.model.remember(keep)
        self.progress.past_nimg = [self.progress.nimg, *self.progress.past_nimg][:keep]

    def _next_multiple(self, kimg: float, after: int | None = None) -> float:
        """The first multiple of `kimg` (in images) above `after` (default: the images seen)."""
        every = max(1, round(kimg * 1000))
        return ((self.progress.nimg if after is None else after) // every + 1) * every

    def step(self) -> None:
        cfg, model = self.cfg, self.model
        t0 = self.clock()
        x0, y = self._real_batch()
        self._set_learning_rates()
        # Every rank draws the whole global batch from the same generators and keeps its rows.
        batch = distributed.shard(self.objective.draw(x0, self.gen, y))
        due = tuple(p for p in self.objective.phases if self.progress.step % p.interval == 0)
        with self._autocast():
            self.objective.begin(batch, due)
        for phase in due:
            opt, params = self.opts[phase.network], self._params[phase.network]
            self._train_only(phase.network)
            with self._autocast():
                loss = self.objective.loss(phase, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(params)
            # The norm only: clip_grad_norm_(..., inf) also multiplies every gradient by 1.
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            self.stats.report(f"Loss/{phase.name}", loss)
            self.stats.report(f"Grad/{phase.network}", grad_norm)
            opt.step()
        distributed.broadcast_buffers(self._running_buffers)
        model.update_ema(self._ema_decay())
        self.progress.nimg += cfg.batch
        self.progress.step += 1
        self.progress.seconds += self.clock() - t0

    def _train_only(self, network: str) -> None:
        """Let gradients reach the parameters of `network` and of G, no other network's: G's only flow
        where a phase lets them. Flags are set only where they change (on D: twice a step, not on
        every phase)."""
        for name, params in self._params.items():
            trainable = name == "G" or name == network
            if self._trainable.get(name) != trainable:
                for p in params:
                    p.requires_grad_(trainable)
                self._trainable[name] = trainable

    def _set_learning_rates(self) -> None:
        scale = lr_scale(self.cfg.lr_decay, self.budget_used)
        for name, opt in self.opts.items():
            for group in opt.param_groups:
                group["lr"] = self._base_lr(name) * scale

    def _base_lr(self, network: str) -> float:
        """D's rate for the discriminator, G's for the generator and the objective's own networks
        (DMD2 trains its fake denoiser at the generator's rate)."""
        return self.cfg.lr_d if network == "D" else self.cfg.lr_g

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A global batch of real samples [B, ...] and, for a class-conditional model, their classes [B]."""
        index = torch.randint(len(self.data), (self.cfg.batch,), generator=self.data_gen)
        x0 = self.data.batch(index)
        if self.cfg.xflip and self.data.is_image:
            flip = torch.rand(self.cfg.batch, generator=self.data_gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        y = self.data.labels[index].to(self.device, non_blocking=True) if self.model.cfg.num_classes else None
        return x0.to(self.device, non_blocking=True), y

    def _ema_decay(self) -> float:
        half_life = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup > 0:
            half_life = min(half_life, self.progress.nimg * self.cfg.ema_rampup)
        return 0.5 ** (self.cfg.batch / max(half_life, 1e-8))

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ----------------------------------------------------------------------------- records

    def tick(self, bar) -> None:
        p = self.progress
        now = self.clock()
        started, nimg0 = self._tick_start
        self._tick_start = (now, p.nimg)
        stats = self.stats.collect()  # pooled over ranks: the same on each
        for name, opt in self.opts.items():
            stats[f"LR/{name}"] = opt.param_groups[0]["lr"]
        stats["Speed/img_per_s"] = (p.nimg - nimg0) / max(now - started, 1e-9)
        stats["Memory/peak_mb"] = _peak_memory_mb(self.device)  # rank 0's
        if distributed.is_main():
            self._write_stats(stats)
            if not self.cfg.metrics:
                self._final_values = {k: v for k, v in stats.items() if k in ("Loss/G", "Loss/D")}
        losses = "  ".join(f"{k.removeprefix('Loss/')} {v:.3f}" for k, v in stats.items() if k.count("/") == 1 and k.startswith("Loss/"))
        used = min(self.budget_used, 1.0)  # of kimg or minutes: the time left follows the pace so far
        left = duration(p.seconds * (1 - used) / used) if used > 0 else "?"
        self.console(f"tick {p.tick:<4d} kimg {p.nimg / 1000:<8.1f} time {duration(p.seconds):<7} left {left:<7} "
                     f"img/s {stats['Speed/img_per_s']:<7.0f} {losses}")
        bar.set_postfix_str(losses, refresh=False)
        p.tick += 1
        bad = [k for k, v in stats.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"non-finite {', '.join(bad[:3])} at {p.nimg / 1000:.1f} kimg; the last good checkpoint in "
                f"{self.run.checkpoints} is kept. Try lower --lr-g/--lr-d, --precision fp32, or a larger --r1-gamma, "
                "then --resume that checkpoint")

    def _write_stats(self, stats: dict[str, float]) -> None:
        p = self.progress
        record = {"kimg": p.nimg / 1000, "step": p.step, "tick": p.tick, "seconds": round(p.seconds, 2), **stats}
        append_jsonl(self.run.stats, record)
        writer = self.writer()
        for name, value in stats.items():
            writer.add_scalar(name, value, p.nimg)
        writer.flush()

    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run.path))
            self._writer.add_text("config", "```\n" + json.dumps(self.cfg.to_dict(), indent=2) + "\n```", 0)
            self._writer.add_custom_scalars(TENSORBOARD_LAYOUT)
        return self._writer

    def snapshot(self) -> Path:
        """Rank 0 writes the checkpoint (the state is the same on every rank)."""
        kimg = self.progress.nimg // 1000
        path = distributed.on_main(self._save_checkpoint, self.run.checkpoints / ckpt_io.checkpoint_name(kimg))
        grid = self.save_grid(self.run.samples / f"samples-{kimg:06d}.png")
        past = self.progress.past_nimg
        mixed = f", a mixture of G_ema and its states at {', '.join(f'{n / 1000:g}' for n in past)} kimg" if past else ""
        self.console(f"snapshot {path.name}, samples {grid.name}{mixed}")
        return path

    def _save_checkpoint(self, path: Path) -> Path:
        try:
            return ckpt_io.save_atomic(self.state_dict(), path)
        except OSError as e:
            raise RunError(f"cannot write a checkpoint to {self.run.checkpoints} ({e.strerror or e}); the previous "
                           "checkpoints are intact: free space or fix permissions, then --resume auto") from None

    def save_grid(self, path: Path) -> Path:
        model, n, classes = self.model, self.cfg.grid_seeds, self.model.cfg.num_classes
        sampler, steps = default_sampling(model.cfg, fast=True)
        seeds = list(range(n if model.cfg.is_image else max(n, 2000)))
        if classes:  # a column per class: seed s draws class s mod K
            seeds = list(range(classes * max(1, n // classes)))

        def draw(part: list[int]) -> torch.Tensor:
            labels = torch.tensor([s % classes for s in part]) if classes else None
            return sample_batched(model, part, batch=256, steps=steps, sampler=sampler, device=self.device, labels=labels)

        # Seeds are spread over the ranks and the samples gathered; rank 0 writes the grid.
        x = distributed.gather_rows(draw, seeds)
        if not distributed.is_main():
            return path
        step = self.progress.nimg
        if model.cfg.is_image:
            grid = image_grid(x, classes or None)
            save_png(grid, path, scale=max(1, 128 // model.cfg.shape[-1]))
            self.writer().add_image("Samples", upscaled(grid, 512), step, dataformats="HWC")
        else:
            ref = self.data.data[:2000]
            scatter_png(x, path, reference=ref, title=f"{self.cfg.objective}, {step / 1000:.0f} kimg, NFE {steps}")
            from hybridgan.hybrid.images import read_png

            self.writer().add_image("Samples", read_png(path)[:, :, :3], step, dataformats="HWC")
        return path

    def evaluate(self) -> None:
        # Rank 0 evaluates alone while the others wait (spreading the samples over ranks is future work).
        distributed.on_main(self._evaluate)

    def _evaluate(self) -> None:
        """cfg.metrics of the EMA generator, recorded in metrics.jsonl, TensorBoard and the console.
        A failure is reported and skipped: an evaluation never ends a training run."""
        from hybridgan.metrics.evaluate import HELD_OUT_SEED, EvalConfig, evaluate_model

        cfg, nimg = self.cfg, self.progress.nimg
        ref, ref_name = self.data, cfg.data
        if not self.data.is_image and self.data.modes is not None:  # a toy mixture: a held-out draw, as `hybrid eval` takes
            ref, ref_name = load_dataset(cfg.data, None, HELD_OUT_SEED), f"{cfg.data} held-out"
        ecfg = EvalConfig(metrics=tuple(cfg.metrics), num=cfg.eval_num, extractor=cfg.extractor)
        try:
            result = evaluate_model(self.model, ref, ref_name, ecfg, self.device, self.console, f"G_ema at {nimg} img")
        except UserError as e:
            self.console(f"evaluation skipped: {e}")
            return
        self._final_values = dict(result.values)
        for record in result.records(kimg=nimg / 1000):
            append_jsonl(self.run.metrics, record)
        writer = self.writer()
        for key, value in result.values.items():
            if math.isfinite(value):
                writer.add_scalar(f"Metrics/{key}", value, nimg)
        writer.flush()
        summary = "  ".join(f"{k} {v:.4g}" for k, v in result.values.items())
        self.console(f"metrics at {nimg / 1000:.1f} kimg (N={result.num}, NFE {result.nfe}, {result.seconds:.0f} s): {summary}")

    # ----------------------------------------------------------------------------- context

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def handler(signum, frame):
            self.signal_received = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def _bar(self):
        from tqdm import tqdm

        bar = tqdm(total=self.total_nimg, initial=self.progress.nimg, unit="img", unit_scale=True,
                   disable=not sys.stdout.isatty() or self.console.quiet, dynamic_ncols=True, leave=False)
        self.console.bar = bar if not bar.disable else None
        try:
            yield bar
        finally:
            bar.close()
            self.console.bar = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


# TensorBoard's "Custom Scalars" tab: what the README's health advice compares, on shared axes.
TENSORBOARD_LAYOUT = {
    "GAN health": {
        "D logits: real vs fake": ["Multiline", [r"^D/logit/real$", r"^D/logit/fake$"]],
        "D logits per level": ["Multiline", [r"^D/logit/(real|fake)/t\d+$"]],
        "losses (D at chance: ln 4 = 1.386)": ["Multiline", [r"^Loss/D$", r"^Loss/G$"]],
        "diffusion-gan: T": ["Multiline", [r"^DiffusionGAN/T$"]],
        "diffusion-gan: r_d = E[sign(D(real))]": ["Multiline", [r"^DiffusionGAN/r_d$"]],
    },
    "Metrics": {"all": ["Multiline", [r"^Metrics/"]]},
}


def upscaled(image: np.ndarray, side: int) -> np.ndarray:
    """An [H, W, C] image enlarged by a whole factor (nearest) to at least `side` pixels wide."""
    factor = max(1, -(-side // image.shape[1]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --------------------------------------------------------------------------------- entry point


def train(cfg: TrainConfig, run_dir: str | Path | None = None, resume: str | None = None,
          changes: Mapping[str, Any] | None = None, model_changes: dict[str, Any] | None = None,
          quiet: bool = False) -> Path:
    """Train a model; returns the run directory.

    cfg: the configuration of a new run (None fields are resolved from the data).
    resume: None (a new run; `run_dir` must not hold one), "auto" (the newest checkpoint in
    `run_dir`, or a new run if there is none) or a checkpoint path. When resuming, the
    checkpoint's config is used with `changes` applied (only RESUMABLE keys may differ).
    model_changes: chain and generator options applied to the default model of a new run.

    Started by torchrun or `hybrid train --gpus N` (RANK, WORLD_SIZE ... set), each process
    trains its slice of the global batch; rank 0 alone owns the run directory.
    """
    joined = distributed.init_from_env()
    try:
        return _train(cfg, run_dir, resume, changes, model_changes, quiet)
    finally:
        if joined:
            distributed.close()


def _train(cfg: TrainConfig, run_dir: str | Path | None, resume: str | None, changes: Mapping[str, Any] | None,
           model_changes: dict[str, Any] | None, quiet: bool) -> Path:
    # Rank 0 finds the run and reads the checkpoint; the others get both from it (no shared disk needed).
    run, ckpt_path, state = distributed.on_main(_open_and_load, cfg, run_dir, resume)
    if state is not None:
        cfg = _resumed_config(state, changes or {}, ckpt_path, model_changes)
    # Bad data or options fail before the run directory exists: a leftover empty run
    # directory would make the corrected command fail with "already holds a run".
    resolve_device(cfg.device)
    check_precision(cfg.precision)
    data = load_dataset(cfg.data, cfg.resolution, seed=cfg.seed)
    classes = class_shares(data, cfg.data) if cfg.cond and state is None else None
    if cfg.metrics:
        from hybridgan.metrics.extractors import check_extractor
        from hybridgan.metrics.registry import check_labels, get_metrics

        # Unknown names, or metrics the data or the extractor cannot give, fail now, not hours in.
        chosen = get_metrics(cfg.metrics, kind="image" if data.is_image else "vector")
        check_labels(chosen, data.labels, cfg.data, "--metrics")
        check_extractor(cfg.extractor, None, [m for m in chosen if m.gen_layers or m.ref_layers], data.labels, cfg.data)
    kind = OBJECTIVES.get(cfg.objective)
    cfg, inputs = kind.prepare(cfg, tuple(data.shape), resumed=state is not None) if kind else (cfg, {})
    if state is None:
        cfg = resolve(cfg, data.shape, model_changes, classes)
    cfg = settled(cfg, data)
    distributed.check_batch(cfg.batch)
    main = distributed.is_main()
    distributed.on_main(_claim, run, cfg)
    console = Console(run.log if main else None, quiet=quiet or not main)
    try:
        trainer = Trainer(cfg, run, data, console, inputs)
        if state is not None:
            trainer.load_state_dict(state)
            console(f"resumed from {ckpt_path} at {trainer.progress.nimg / 1000:.1f} kimg")
        try:
            trainer.train()
        finally:
            trainer.close()
    finally:
        run.unlock()
    return run.path


def _open_and_load(cfg: TrainConfig, run_dir: str | Path | None,
                   resume: str | None) -> tuple[RunDir, Path | None, dict[str, Any] | None]:
    run, ckpt_path = _open_run(cfg, run_dir, resume)
    return run, ckpt_path, ckpt_io.load(ckpt_path) if ckpt_path else None


def _claim(run: RunDir, cfg: TrainConfig) -> None:
    """Create and lock the run directory and write its config.json: the configuration the run now
    trains with (a resumed run's budget may have changed, or it may continue in a new directory)."""
    run.create()
    run.lock()
    try:
        _write_config(run, cfg)
    except BaseException:
        run.unlock()
        raise


def _open_run(cfg: TrainConfig, run_dir: str | Path | None, resume: str | None) -> tuple[RunDir, Path | None]:
    if resume is None:
        run = RunDir(run_dir or next_run_dir("runs", cfg.data, cfg.objective))
        if run.has_content():
            raise UserError(f"--run-dir {run.path} already holds a run; continue it with --resume auto, "
                            "or choose another --run-dir")
        return run, None
    if resume == "auto":
        if run_dir is None:
            raise UserError("--resume auto needs --run-dir: the run directory to continue")
        run = RunDir(run_dir)
        return run, run.latest_checkpoint()
    path = Path(resume)
    if not path.is_file():
        raise UserError(f"--resume {resume}: no such checkpoint file; give a checkpoint-*.pt or 'auto'")
    return RunDir(run_dir or path.resolve().parent.parent), path


def _resumed_config(state: Mapping[str, Any], changes: Mapping[str, Any], path: Path,
                    model_changes: Mapping[str, Any] | None = None) -> TrainConfig:
    """The run's config with the changes a resumed run may take; any other change is refused.
    model_changes: network and chain options, none of which a run may change."""
    cfg = config_from_dict(state["config"], source=str(path))
    if cfg.d_pair is None:  # written before --d-pair existed, when D always judged (x_{t-1}, x_t)
        cfg = cfg.replace(d_pair="x_prev")
    if cfg.objective == "distill" and cfg.d_features is None:  # written before --d-features: D was its own network
        cfg = cfg.replace(d_features="own")
    if cfg.objective == "distill" and cfg.teacher_levels is None:  # written before --teacher-levels: none were kept
        cfg = cfg.replace(teacher_levels=0)
    differing = [k for k, v in changes.items() if k not in RESUMABLE and getattr(cfg, k) != v and v is not None]
    differing += [k for k, v in (model_changes or {}).items()
                  if cfg.model and with_model_overrides(cfg.model, **{k: v}) != cfg.model]
    if differing:
        raise UserError(f"--resume {path}: cannot change {', '.join(differing)} of a run; only "
                        f"{', '.join(RESUMABLE)} may change (start a new run for the rest)")
    return cfg.replace(**{k: v for k, v in changes.items() if k in RESUMABLE})


def settled(cfg: TrainConfig, data: Dataset) -> TrainConfig:
    """The values "auto" and None stand for, as this machine chooses them, so that config.json
    says what ran: the device, the precision, the image side and the model's sampler."""
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device, data.is_image)
    model = cfg.model
    if model is not None and model.sampler is None:
        model = dataclasses.replace(model, sampler=default_sampling(model)[0])
    return cfg.replace(device=device.type, precision="bf16" if dtype == torch.bfloat16 else "fp32",
                       resolution=cfg.resolution or (data.shape[-1] if data.is_image else None), model=model)


def _write_config(run: RunDir, cfg: TrainConfig) -> None:
    """config.json: the resolved configuration (`--config` reads it back; keys starting with "_"
    are not options) and, under "_run", where this session came from."""
    tmp = run.config.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**cfg.to_dict(), "_run": provenance()}, indent=2) + "\n")
    tmp.replace(run.config)
