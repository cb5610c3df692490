"""The client's errors (client.py re-exports them: `fermion.client.FermionError`)."""


class FermionError(Exception):
    """A request to Fermion failed; the message is the server's explanation."""


class JobFailed(FermionError):
    """A job ended with `training.failed` or `scoring.failed` (or was cancelled)."""
