"""Shared fixtures: tiny data and a tiny trained checkpoint store (seconds on a CPU)."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_arrays, train_tiny

from featdyn.data import tensor_data

WORKER_GROUPS = {"test_workflow.py": "workflow", "test_slurm.py": "cluster", "test_example.py": "cluster"}
"""Modules kept on one pytest-xdist worker each (`--dist loadgroup`): the tiny workflow's module-scoped
run on one, the SLURM cluster (mostly waiting on its jobs) and the example on the other; the unit tests
fill both."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = WORKER_GROUPS.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def tiny_store_path(tmp_path_factory):
    path, _, _ = train_tiny(tmp_path_factory.mktemp("tiny_run"))
    return path


@pytest.fixture(scope="session")
def tiny_data():
    return tensor_data(tiny_arrays())


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor tests: threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
