"""Why a job failed::

    JobError
    └── PermanentJobError       the request itself is wrong: fail it, never retry
        ├── DatasetError        the dataset does not parse, lacks its label column, ...
        ├── UnknownArchitecture no recipe of that name
        └── JobCancelled        a training.cancel event asked for it to stop

Anything else a job raises is taken as transient: the worker naks it with back-off, and the last
allowed delivery fails it (functions/trainer/worker.py).
"""


class JobError(Exception):
    """Base of every job error."""


class PermanentJobError(JobError):
    """Retrying cannot help."""


class DatasetError(PermanentJobError):
    """The dataset cannot be used as asked."""


class UnknownArchitecture(PermanentJobError):
    """The recipe names an architecture the trainer does not have."""


class JobCancelled(PermanentJobError):
    """The job was cancelled by a `training.cancel` event."""
