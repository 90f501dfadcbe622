"""Errors that the command line turns into a one-line message and an exit code."""


class UserError(Exception):
    """Bad input from the user: a path, a file, an option. The CLI prints it and exits 2."""

    exit_code = 2


class RunError(Exception):
    """A failure at run time that is not the user's input (a full disk, say). Exit 1."""

    exit_code = 1


class TrainingDiverged(RunError):
    """A non-finite loss stopped the run; the last good checkpoint is kept. Exit 1."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved; exit 130 or 143."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}; a checkpoint was saved, continue with --resume auto")
        self.exit_code = 128 + signum
