"""What the tests share besides fixtures: ports, polls, tiny ONNX models, keys, processes, stacks, pictures.

Fixtures live in tests/conftest.py and use these; tests import from here, never from conftest.
"""

from tests.helpers.faults import Frozen
from tests.helpers.keys import api_key, bearer
from tests.helpers.models import linear_draft, linear_onnx
from tests.helpers.paths import REPO
from tests.helpers.ports import free_port
from tests.helpers.processes import FunctionProcess, Trainer
from tests.helpers.s3 import s3_client
from tests.helpers.stack import StackOptions, running_stack
from tests.helpers.waiting import wait_for_model, wait_until

__all__ = [
    "REPO",
    "Frozen",
    "FunctionProcess",
    "StackOptions",
    "Trainer",
    "api_key",
    "bearer",
    "free_port",
    "linear_draft",
    "linear_onnx",
    "running_stack",
    "s3_client",
    "wait_for_model",
    "wait_until",
]
