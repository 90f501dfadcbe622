"""Inception feature extraction on the CPU: this checkout against an older commit, in one run.

    python bench/inception_speed.py --old REV [--images 128] [--batch 64] [--rounds 3] [--threads N]

Each measurement is a worker process importing one version (bench/versions.py): it builds the
extractor as evaluations do (`metrics.features.build_extractor` with the weights
`find_inception_weights` finds, the 2048-d pool3 features), extracts one warm-up batch, then
times `extract` over --images images: the 16x16 digits (grayscale, as FID on digits sees them) and
random 32x32 colour images. img/s is a median over rounds, the two versions alternating. The last
column compares the versions' features image by image: max |new - old| / |old|.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from versions import abba, check_import, header, median, run_worker, table, versions  # noqa: E402

SETS = ("digits 16x16", "random 32x32 rgb")


def images(name: str, num: int):
    import torch

    if name.startswith("digits"):
        from hybridgan.training.data import load_dataset

        data = load_dataset("digits").data
        return data[torch.arange(num) % len(data)]
    return torch.randint(0, 256, (num, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def worker(name: str, num: int, batch: int, threads: int, out: str) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from hybridgan.metrics.features import ExtractorSpec, build_extractor, extract, image_batches
    from hybridgan.metrics.inception import find_inception_weights

    spec = ExtractorSpec(weights=find_inception_weights(), batch=batch)
    cpu = torch.device("cpu")
    net = build_extractor(spec, ["2048"], cpu)
    x = images(name, num)
    extract(net, image_batches(x[:batch], batch), cpu, progress=False)
    wall, proc = time.perf_counter(), time.process_time()
    feats = extract(net, image_batches(x, batch), cpu, progress=False)["2048"]
    wall, proc = time.perf_counter() - wall, time.process_time() - proc
    torch.save(feats, out)
    return {"img_s": num / wall, "cpu_ms": 1000 * proc / num, "threads": torch.get_num_threads(), "net": type(net).__name__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default=None, help="the commit to compare with (e.g. main); none: this checkout alone")
    parser.add_argument("--images", type=int, default=128, help="images timed per measurement (default 128)")
    parser.add_argument("--batch", type=int, default=64, help="images per forward pass (default 64, evaluations' default)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of old and new (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in every worker (default: torch's choice)")
    parser.add_argument("--worker", nargs=5, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.worker:
        name, num, batch, threads, out = args.worker
        print(json.dumps(worker(name, int(num), int(batch), int(threads), out)))
        return

    import torch

    print(header("bench/inception_speed.py", f"--images {args.images}, --batch {args.batch}, --rounds {args.rounds}, "
                                             f"threads {args.threads or 'default'}"))
    rows = []
    with versions(args.old) as vs, tempfile.TemporaryDirectory() as tmp:
        for v in vs:
            check_import(v)
        for name in SETS:
            results: dict[str, list[dict]] = {v.label: [] for v in vs}
            for _, v in abba(vs, args.rounds):
                out = str(Path(tmp) / f"{len(results[v.label])}-{vs.index(v)}.pt")
                res = run_worker(__file__, v, [name, str(args.images), str(args.batch), str(args.threads or 0), out])
                if "error" in res:
                    sys.exit(f"{v.label} {name}: {res['error']}")
                results[v.label].append({**res, "features": out})
            img = [median([x["img_s"] for x in results[v.label]]) for v in vs]
            row = [name, args.batch, *(f"{x:.2f}" for x in img)]
            row += [f"{median([x['cpu_ms'] for x in results[v.label]]):.0f}" for v in vs]
            if len(vs) == 2:
                old, new = (torch.load(results[v.label][0]["features"], weights_only=True) for v in vs)
                err = ((new - old).norm(dim=1) / old.norm(dim=1)).max().item()
                row += [f"{img[1] / img[0]:.2f}x", f"{err:.1e}"]
            rows.append(row)
        columns = ["images", "batch", *(f"{v.label} img/s" for v in vs), *(f"{v.label} cpu ms/img" for v in vs)]
        columns += ["new/old", "features: max rel. difference"] if len(vs) == 2 else []
        print()
        print(table(columns, rows))


if __name__ == "__main__":
    main()
