"""Why a job failed, and whether trying again could help::

JobError
├── PermanentJobError       the request itself is wrong: fail it, never retry
│   ├── DatasetError        the dataset does not parse, lacks its label column, ...
│   └── UnknownArchitecture no recipe of that name
└── RetryableJobError       the world was briefly wrong (store unreachable): nak with a delay
"""


class JobError(Exception):
    """Base of every job error."""


class PermanentJobError(JobError):
    """Retrying cannot help."""


class DatasetError(PermanentJobError):
    """The dataset cannot be used as asked."""


class UnknownArchitecture(PermanentJobError):
    """The recipe names an architecture the trainer does not have."""


class RetryableJobError(JobError):
    """A transient fault; the job may succeed on redelivery."""


class JobCancelled(PermanentJobError):
    """The job was cancelled by a `training.cancel` event."""
