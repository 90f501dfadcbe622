"""Test harness for tests/test_distributed.py: with HYBRID_RANK_DUMP=DIR, every process that
trains (each rank of `hybrid train --gpus N`) saves its final state to DIR/rank<RANK>.pt.

Python imports `sitecustomize` at start-up from PYTHONPATH, so the launcher's spawned workers
load it too; the training code itself has no test hook.
"""

import os

if os.environ.get("HYBRID_RANK_DUMP"):
    import torch

    from hybridgan.training import trainer

    _close = trainer.Trainer.close

    def close(self) -> None:
        state = {k: v for k, v in self.state_dict().items() if k in ("G", "G_ema", "D", "rng", "progress", "opt", "objective")}
        torch.save(state, os.path.join(os.environ["HYBRID_RANK_DUMP"], f"rank{os.environ.get('RANK', '0')}.pt"))
        _close(self)

    trainer.Trainer.close = close
