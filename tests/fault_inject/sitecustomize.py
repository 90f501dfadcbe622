"""Fault injection for subprocess tests (on PYTHONPATH only there): SIGKILL this process after
its Nth training step (HYBRID_KILL_AT_STEP=N) or half-way through writing its Nth checkpoint
(HYBRID_KILL_IN_SAVE=N), as a preemption or the OOM killer would."""

import os

_AT_STEP = int(os.environ.get("HYBRID_KILL_AT_STEP", "0"))
_IN_SAVE = int(os.environ.get("HYBRID_KILL_IN_SAVE", "0"))

if _AT_STEP or _IN_SAVE:
    import io
    import signal

    import torch

    from hybridgan.training.trainer import Trainer

    _counts = {"step": 0, "save": 0}
    _real_step, _real_save = Trainer.step, torch.save

    def _step(self):
        _real_step(self)
        _counts["step"] += 1
        if _counts["step"] == _AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    def _save(obj, f, *args, **kwargs):
        _counts["save"] += 1
        if _counts["save"] == _IN_SAVE and hasattr(f, "write"):
            buffer = io.BytesIO()
            _real_save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return _real_save(obj, f, *args, **kwargs)

    Trainer.step = _step
    torch.save = _save
