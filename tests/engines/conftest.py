# The solvers' task fixtures: the engines are tested on the same real Omniglot tasks.
from tests.solvers.conftest import samplers, test_tasks, val_tasks  # noqa: F401
