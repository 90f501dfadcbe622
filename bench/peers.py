"""Training and sampling speed of our `ddpm` and `hybrid` models against two peer libraries.

    pip install -e '.[peers]'    # diffusers and denoising-diffusion-pytorch
    python bench/peers.py [--batch 32] [--precision fp32,bf16] [--windows 5] [--window-steps 2] [--sample-steps 20] [--threads N]

Peers, at matched parameter count (within ~10%, printed) on the same synthetic 32x32x3 data:

- ours: `hybrid train --objective ddpm` through the real `Trainer.step` (eps-prediction MSE,
  fused Adam, the EMA update and the gradient-norm statistic that every step computes), with
  the default 32x32 UNet at width 32 (levels 1,2,2,2, two blocks per level, attention at 16x16);
- diffusers: `UNet2DModel` + `DDPMScheduler`, the step of its unconditional training example
  (add_noise, epsilon MSE, backward, clip_grad_norm_ 1.0, AdamW(lr 1e-4, betas (0.95, 0.999),
  weight decay 1e-6)); its default ResNet blocks, attention at 16x16, widths 64 at every level;
- denoising-diffusion-pytorch: `Unet(dim=16, attn_heads=8)` (its default levels 1,2,4,8) inside
  `GaussianDiffusion` with its default loss (v-prediction, MSE), backward, clip_grad_norm_ 1.0,
  Adam(lr 1e-4, betas (0.9, 0.99)) as its Trainer does.

Training runs at each --precision: fp32, and bf16 autocast around each library's forward and loss
(ours: `--precision bf16`, which `auto` picks on CPUs with AMX or AVX512-BF16; on CPUs without
them bf16 is emulated and slow). The last table compares our step with each peer's best
precision. Models are built from configs
(nothing is downloaded), and each measurement runs in its own subprocess so its peak RSS
(`resource.getrusage(...).ru_maxrss`) is its own; "base MB" is the RSS after imports and
model construction, before the first step. Training: warm-up steps are not timed, then the
median img/s over several timed windows (min and max printed too). Sampling: our hybrid
generator (same network, plus its latent mapping) draws `--sample-num` images at 4 NFE; each
peer runs its 1000-step ancestral DDPM sampler on the same number of images, of which
`--sample-steps` steps are timed and the time is extrapolated linearly to 1000 steps (every step
is one network evaluation of the same cost plus a scheduler update; the output says so).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHAPE = (3, 32, 32)
DDPM_STEPS = 1000
FRAMEWORKS = ("hybrid", "diffusers", "denoising-diffusion-pytorch")
PEER_MODULES = {"diffusers": "diffusers", "denoising-diffusion-pytorch": "denoising_diffusion_pytorch"}
OUR_NET = {"channels": 32}  # on top of the default 32x32 image UNet (levels 1,2,2,2, 2 blocks, attention at 16)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def count(net) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- models and steps


def our_trainer(objective: str, batch: int, run_dir: str, precision: str = "fp32"):
    """The real Trainer on random uint8 images; returns it (its step is what `hybrid train` runs)."""
    import torch

    from hybridgan.training.config import TrainConfig, resolve
    from hybridgan.training.data import Dataset
    from hybridgan.training.rundir import Console, RunDir
    from hybridgan.training.trainer import Trainer

    data = Dataset("synthetic", torch.randint(0, 256, (512, *SHAPE), dtype=torch.uint8))
    cfg = TrainConfig(data="synthetic", objective=objective, batch=batch, device="cpu", precision=precision)
    cfg = resolve(cfg, data.shape, OUR_NET)
    return Trainer(cfg, RunDir(run_dir), data, Console(None, quiet=True))


def diffusers_model():
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=SHAPE[1], in_channels=SHAPE[0], out_channels=SHAPE[0], layers_per_block=2,
                       block_out_channels=(64, 64, 64, 64),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    return unet, DDPMScheduler(num_train_timesteps=DDPM_STEPS)


def lucidrains_model():
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    unet = Unet(dim=16, attn_heads=8)
    return unet, GaussianDiffusion(unet, image_size=SHAPE[1], timesteps=DDPM_STEPS)


def train_step_fn(name: str, batch: int, tmp: str, precision: str = "fp32"):
    """(step function, network, its forward on ([B, C, H, W], [B] timesteps)) of one framework on random data."""
    import contextlib

    import torch

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    if name == "hybrid":
        trainer = our_trainer("ddpm", batch, tmp, precision)
        G = trainer.model.G
        return trainer.step, G, lambda x, t: G(x, t.float() / DDPM_STEPS, None)
    images = torch.rand(batch, *SHAPE) * 2 - 1  # fixed synthetic images in [-1, 1]
    if name == "diffusers":
        unet, scheduler = diffusers_model()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)

        def step() -> None:
            noise = torch.randn_like(images)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,))
            with autocast():
                pred = unet(scheduler.add_noise(images, noise, t), t).sample
                loss = torch.nn.functional.mse_loss(pred.float(), noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            opt.zero_grad()

        return step, unet, lambda x, t: unet(x, t).sample
    unet, diffusion = lucidrains_model()
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-4, betas=(0.9, 0.99))
    images01 = (images + 1) / 2  # GaussianDiffusion takes [0, 1] and normalises itself

    def step() -> None:
        with autocast():
            loss = diffusion(images01)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    return step, unet, unet


def forward_gflops(forward) -> float:
    """GFLOP (matmuls, convolutions, attention) of one network evaluation on one image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        forward(torch.randn(1, *SHAPE), torch.tensor([500]))
    return counter.get_total_flops() / 1e9


def measure_train(name: str, batch: int, warmup: int, windows: int, window_steps: int, precision: str = "fp32") -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        step, net, forward = train_step_fn(name, batch, tmp, precision)
        gflops = forward_gflops(forward)
        base = rss_mb()
        for _ in range(warmup):
            step()
        rates = []
        for _ in range(windows):
            start = time.perf_counter()
            for _ in range(window_steps):
                step()
            rates.append(batch * window_steps / (time.perf_counter() - start))
    return {"params": count(net), "gflops": gflops, "img_s": statistics.median(rates), "min": min(rates), "max": max(rates),
            "base_mb": base, "peak_mb": rss_mb(), "precision": precision}


def measure_sample(name: str, num: int, timed_steps: int) -> dict:
    """Seconds to draw `num` images: ours at 4 NFE in full; a peer's 1000 steps extrapolated from `timed_steps`."""
    import tempfile

    import torch

    torch.manual_seed(0)
    if name == "hybrid":
        from hybridgan.hybrid.samplers import sample_batched

        with tempfile.TemporaryDirectory() as tmp:
            model = our_trainer("hybrid", 32, tmp).model
        sample_batched(model, list(range(2)), batch=num, steps=4, sampler="gan")  # warm-up
        base = rss_mb()
        start = time.perf_counter()
        with torch.no_grad():
            sample_batched(model, list(range(num)), batch=num, steps=4, sampler="gan")
        seconds = time.perf_counter() - start
        return {"params": count(model.G), "seconds": seconds, "nfe": 4, "timed_steps": 4, "base_mb": base,
                "peak_mb": rss_mb()}
    if name == "diffusers":
        unet, scheduler = diffusers_model()
        scheduler.set_timesteps(DDPM_STEPS)

        def run(steps: int, x):
            for t in scheduler.timesteps[:steps]:
                x = scheduler.step(unet(x, t).sample, t, x).prev_sample
            return x
    else:
        unet, diffusion = lucidrains_model()

        def run(steps: int, x):
            for t in list(reversed(range(DDPM_STEPS)))[:steps]:
                x, _ = diffusion.p_sample(x, t)
            return x
    unet.eval()
    with torch.no_grad():
        run(1, torch.randn(num, *SHAPE))  # warm-up
        base = rss_mb()
        start = time.perf_counter()
        run(timed_steps, torch.randn(num, *SHAPE))
        seconds = (time.perf_counter() - start) * DDPM_STEPS / timed_steps
    return {"params": count(unet), "seconds": seconds, "nfe": DDPM_STEPS, "timed_steps": timed_steps,
            "base_mb": base, "peak_mb": rss_mb()}


# ----------------------------------------------------------------------------- driver


def run_worker(kind: str, name: str, args: argparse.Namespace, precision: str = "fp32") -> dict:
    cmd = [sys.executable, __file__, "--worker", f"{kind}:{name}:{precision}", "--batch", str(args.batch),
           "--warmup", str(args.warmup), "--windows", str(args.windows), "--window-steps", str(args.window_steps),
           "--sample-num", str(args.sample_num), "--sample-steps", str(args.sample_steps)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the caller's PYTHONPATH kept
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def missing_peers() -> list[str]:
    return [name for name, module in PEER_MODULES.items() if importlib.util.find_spec(module) is None]


def print_training(results: dict[tuple[str, str], dict], batch: int) -> None:
    """One row per framework and precision; then our step against each peer's best precision."""
    print(f"## Training step, batch {batch}, 32x32x3 (median img/s over timed windows)\n")
    print("| framework | precision | parameters | vs ours | GFLOP/img fwd | img/s (median) | min-max | base MB | peak MB | ours / it |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, precision), r in results.items():
        if "error" in r:
            print(f"| {name} | {precision} | failed: {r['error']} |")
            continue
        ours = results.get(("hybrid", precision), {})
        ratio = ours["img_s"] / r["img_s"] if "img_s" in ours else float("nan")
        params = r["params"] / ours["params"] - 1 if "params" in ours else float("nan")
        print(f"| {name} | {precision} | {r['params'] / 1e6:.2f}M | {params:+.0%} | {r['gflops']:.2f} | {r['img_s']:.1f} | "
              f"{r['min']:.1f}-{r['max']:.1f} | {r['base_mb']:.0f} | {r['peak_mb']:.0f} | {ratio:.2f}x |")
    print()
    ours = [r for (name, _), r in results.items() if name == "hybrid" and "img_s" in r]
    if not ours:
        return
    best_ours = max(ours, key=lambda r: r["img_s"])
    print(f"Our best: {best_ours['img_s']:.1f} img/s ({best_ours['precision']}).\n")
    print("| peer | its best img/s | at | ours (best) / its best |")
    print("|---|---|---|---|")
    for peer in dict.fromkeys(name for name, _ in results if name != "hybrid"):
        runs = [r for (name, _), r in results.items() if name == peer and "img_s" in r]
        if runs:
            best = max(runs, key=lambda r: r["img_s"])
            print(f"| {peer} | {best['img_s']:.1f} | {best['precision']} | {best_ours['img_s'] / best['img_s']:.2f}x |")
    print()


def print_sampling(results: dict[str, dict], num: int) -> None:
    ours = results["hybrid"]
    print(f"## Sampling {num} images\n")
    print("| framework | sampler | parameters | NFE | seconds | s/img | base MB | peak MB | it / ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed: {r['error']} |")
            continue
        sampler = "hybrid gan, 4 NFE" if name == "hybrid" else f"DDPM, {r['nfe']} steps"
        note = "" if r["timed_steps"] == r["nfe"] else f" (extrapolated from {r['timed_steps']} timed steps)"
        ratio = r["seconds"] / ours["seconds"] if "seconds" in ours else float("nan")
        print(f"| {name} | {sampler} | {r['params'] / 1e6:.2f}M | {r['nfe']} | {r['seconds']:.2f}{note} | "
              f"{r['seconds'] / num:.3f} | {r['base_mb']:.0f} | {r['peak_mb']:.0f} | {ratio:.0f}x |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="training batch (default 32)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first (default 2)")
    parser.add_argument("--windows", type=int, default=5, help="timed training windows (default 5)")
    parser.add_argument("--window-steps", type=int, default=2, help="training steps per window (default 2)")
    parser.add_argument("--sample-num", type=int, default=16, help="images to sample (default 16)")
    parser.add_argument("--sample-steps", type=int, default=20,
                        help=f"peer DDPM steps timed, extrapolated to {DDPM_STEPS} (default 20; {DDPM_STEPS}: no extrapolation)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", default="fp32,bf16", help="training precisions to measure (default fp32,bf16)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"default {','.join(FRAMEWORKS)}")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: "train:NAME:PRECISION" or "sample:NAME:fp32"
    args = parser.parse_args()
    if args.worker:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        kind, name, precision = args.worker.split(":")
        if kind == "train":
            out = measure_train(name, args.batch, args.warmup, args.windows, args.window_steps, precision)
        else:
            out = measure_sample(name, args.sample_num, min(args.sample_steps, DDPM_STEPS))
        print(json.dumps(out))
        return

    frameworks = [f for f in args.frameworks.split(",") if f]
    precisions = [p for p in args.precision.split(",") if p]
    unknown = [f for f in frameworks if f not in FRAMEWORKS] + [p for p in precisions if p not in ("fp32", "bf16")]
    if unknown or "hybrid" not in frameworks:
        sys.exit(f"bench/peers.py: unknown {unknown} (frameworks: {', '.join(FRAMEWORKS)}, hybrid among them; "
                 "precisions: fp32, bf16)" if unknown else "bench/peers.py: --frameworks must include hybrid")
    missing = [m for m in missing_peers() if m in frameworks]
    if missing:
        print(f"bench/peers.py: {', '.join(missing)} not installed; install the peers with "
              "`pip install -e '.[peers]'` (or `pip install diffusers denoising-diffusion-pytorch`)", file=sys.stderr)
        sys.exit(2)
    import torch

    versions = {n: importlib.metadata.version(n) for n in PEER_MODULES if n in frameworks}
    print(f"# hybrid bench/peers.py, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"# torch {torch.__version__}, {', '.join(f'{n} {v}' for n, v in versions.items())}, "
          f"{os.cpu_count()} cores, threads {args.threads or 'default'}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# training: {args.warmup} warm-up steps, then {args.windows} windows of {args.window_steps} steps\n")
    train = {(name, p): run_worker("train", name, args, p) for name in frameworks for p in precisions}
    print_training(train, args.batch)
    sample = {name: run_worker("sample", name, args) for name in frameworks}
    print_sampling(sample, args.sample_num)
    if args.sample_steps < DDPM_STEPS:
        print(f"# peer sampling times are EXTRAPOLATED: {args.sample_steps} of {DDPM_STEPS} DDPM steps timed, x "
              f"{DDPM_STEPS / args.sample_steps:g}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
