"""Where a training step's time goes: torch.profiler over the default digits step, old and new.

    python bench/step_profile.py --old REV [--objective hybrid|ddpm|distill] [--batch 16] [--precision auto] [--steps 32]
    python bench/step_profile.py --objective distill --dm-loss sid

For each version (bench/versions.py) a worker builds the Trainer as `hybrid train` would (digits,
the objective's defaults), runs 20 untimed steps, then profiles --steps steps (a multiple of 16
includes R1 at its 1-in-16 rate) on one thread. It prints, per step: the operator calls, the
tensor allocations (aten::empty and empty_strided), the aten::item calls (on a GPU each is a
host-device sync; on the CPU they read CPU tensors), the profiled CPU time, the CPU time in
each part of the step, and the operators with the most self CPU time. Counts do not depend on
the machine's load; times do (compare them within one run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from versions import check_import, header, run_worker, table, versions  # noqa: E402

TOP = 12
PARTS = ("draw", "G forward (begin)", "D phase", "R1 phase", "G phase", "DM gradient (in G phase)", "fake phase", "backward",
         "optimizer", "EMA")


def worker(objective: str, batch: int, precision: str, steps: int, dm_loss: str) -> dict:
    import tempfile

    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    torch.set_num_threads(1)
    from hybridgan.training.config import TrainConfig, resolve
    from hybridgan.training.data import load_dataset
    from hybridgan.training.rundir import Console, RunDir
    from hybridgan.training.trainer import Trainer

    data = load_dataset("digits")
    cfg = TrainConfig(data="digits", objective=objective, batch=batch, precision=precision, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = None
        if objective == "distill":  # its teacher: a ddpm run of a few steps (its weights do not change the cost)
            from hybridgan.training.objectives import OBJECTIVES
            from hybridgan.training.trainer import train

            teacher = RunDir(train(TrainConfig(data="digits", objective="ddpm", kimg=0.064, device="cpu"),
                                   f"{tmp}/teacher", quiet=True)).latest_checkpoint()
            cfg = cfg.replace(teacher=str(teacher), **({"dm_loss": dm_loss} if dm_loss else {}))
            cfg, inputs = OBJECTIVES["distill"].prepare(cfg, data.shape, resumed=False)
        cfg = resolve(cfg, data.shape)
        trainer = Trainer(cfg, RunDir(tmp), data, Console(None, quiet=True), inputs)
        labelled(trainer, record_function)
        for _ in range(20):  # 20, then a multiple of 16: the profiled steps hold R1 at its rate
            trainer.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                trainer.step()
    events = prof.key_averages()
    ops = [e for e in events if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) / 1000 / steps

    def calls(*names: str) -> float:
        return sum(e.count for e in ops if e.key in names) / steps

    parts = {e.key.removeprefix("## "): e.cpu_time_total / 1000 / steps for e in events if e.key.startswith("## ")}
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:TOP]
    return {"ops": sum(e.count for e in ops) / steps, "allocations": calls("aten::empty", "aten::empty_strided"),
            "item": calls("aten::item"), "cpu_ms": total, "autocast": str(trainer.autocast_dtype), "parts": parts,
            "top": [(e.key, e.count / steps, e.self_cpu_time_total / 1000 / steps) for e in top]}


def labelled(trainer, record_function) -> None:
    """Name the parts of a step for the profiler (methods wrapped on this trainer only)."""
    import torch

    def wrap(owner, attr, label):
        fn = getattr(owner, attr)

        def wrapped(*args, **kwargs):
            with record_function(f"## {label}"):
                return fn(*args, **kwargs)
        setattr(owner, attr, wrapped)

    objective = trainer.objective
    wrap(objective, "draw", "draw")
    wrap(objective, "begin", "G forward (begin)")
    if hasattr(objective, "_dm_loss"):  # distill: the teacher's and the fake denoiser's forwards
        wrap(objective, "_dm_loss", "DM gradient (in G phase)")
    loss = objective.loss

    def phase_loss(phase, batch):
        name = {"D": "D phase", "Dreg": "R1 phase", "G": "G phase"}.get(phase.name, f"{phase.name} phase")
        with record_function(f"## {name}"):
            return loss(phase, batch)
    objective.loss = phase_loss
    wrap(trainer.model, "update_ema", "EMA")
    for opt in trainer.opts.values():
        wrap(opt, "step", "optimizer")
    original = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with record_function("## backward"):
            return original(self, *args, **kwargs)
    torch.Tensor.backward = backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default=None, help="the commit to compare with (e.g. main); none: this checkout alone")
    parser.add_argument("--objective", default="hybrid", help="hybrid (default), ddpm or distill (its teacher a ddpm run of 64 images)")
    parser.add_argument("--batch", type=int, default=16, help="default 16, the image default")
    parser.add_argument("--precision", default="auto", help="auto (default: bf16 where the CPU computes it), fp32 or bf16")
    parser.add_argument("--steps", type=int, default=32, help="profiled steps (default 32)")
    parser.add_argument("--dm-loss", default="", choices=("", "dmd", "sid"),
                        help="distill: dmd or sid (default: the objective's, dmd; commits before the option take neither)")
    parser.add_argument("--worker", nargs=5, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.worker:
        objective, batch, precision, steps, dm_loss = args.worker
        print(json.dumps(worker(objective, int(batch), precision, int(steps), dm_loss)))
        return
    if args.dm_loss and args.objective != "distill":
        parser.error("--dm-loss: only --objective distill has one")
    loss = f", --dm-loss {args.dm_loss}" if args.dm_loss else ""
    print(header("bench/step_profile.py", f"{args.objective}{loss}, batch {args.batch}, precision {args.precision}, "
                                          f"{args.steps} profiled steps, 1 thread"))
    with versions(args.old) as vs:
        results = {}
        for v in vs:
            check_import(v)
            results[v.label] = run_worker(__file__, v, [args.objective, str(args.batch), args.precision, str(args.steps),
                                                            args.dm_loss])
            if "error" in results[v.label]:
                sys.exit(f"{v.label}: {results[v.label]['error']}")
    labels = list(results)
    autocast = ", ".join(f"{k} {r['autocast']}" for k, r in results.items())
    print(f"\nautocast: {autocast}\n")
    rows = [["operator calls", *(f"{results[k]['ops']:.0f}" for k in labels)],
            ["tensor allocations", *(f"{results[k]['allocations']:.0f}" for k in labels)],
            ["aten::item calls", *(f"{results[k]['item']:.0f}" for k in labels)],
            ["CPU ms (profiled)", *(f"{results[k]['cpu_ms']:.1f}" for k in labels)]]
    rows += [[f"ms in {part}", *(f"{results[k]['parts'].get(part, 0):.1f}" for k in labels)] for part in PARTS
             if any(part in results[k]["parts"] for k in labels)]
    print(table(["per step", *labels], rows))
    for k in labels:
        r = results[k]
        print(f"\n{k}: the {TOP} operators with the most self CPU time\n")
        print(table(["operator", "calls/step", "self ms/step", "share"],
                    [[name, f"{n:.1f}", f"{ms:.2f}", f"{ms / r['cpu_ms']:.0%}"] for name, n, ms in r["top"]]))


if __name__ == "__main__":
    main()
