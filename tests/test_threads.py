"""The thread policy: how many threads, from where, and that tasks on threads come back in order, unchanged."""
import json
import os
import subprocess
import sys
import threading

import pytest
import torch

from l2l_omniglot import threads
from l2l_omniglot.errors import ConfigError
from tests.conftest import REPO, omnimeta


@pytest.fixture(autouse=True)
def restore_threads():
    """Leave torch's thread count, the task workers and the environment as each test found them."""
    before = torch.get_num_threads()
    saved = {name: os.environ.get(name) for name in (*threads.WAIT_ENV, threads.THREADS_ENV)}
    yield
    threads.shutdown()
    torch.set_num_threads(before)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.mark.parametrize("cores, ranks, expected", [(1, 1, 1), (2, 1, 2), (16, 1, 16), (2, 2, 1), (2, 3, 1),
                                                    (16, 4, 4), (16, 3, 5)])
def test_default_is_the_share_of_the_cores_of_each_rank(cores, ranks, expected):
    assert threads.default_threads(cores, ranks=ranks) == expected


def test_default_counts_the_cores_this_process_may_use():
    assert threads.default_threads() == len(os.sched_getaffinity(0)) == threads.available_cores()


def test_ranks_take_their_share_unless_told():
    assert threads.rank_threads(2, cores=2) == 1
    assert threads.rank_threads(2, requested=3, cores=2) == 3
    with pytest.raises(ConfigError, match="--threads"):
        threads.rank_threads(2, requested=0)


def test_where_the_count_comes_from():
    assert threads.requested_threads(3, {"OMNIMETA_THREADS": "1"}) == (3, "--threads")
    assert threads.requested_threads(None, {"OMNIMETA_THREADS": "1", "OMP_NUM_THREADS": "4"}) == (
        1, "$OMNIMETA_THREADS")
    assert threads.requested_threads(None, {"OMP_NUM_THREADS": "4"}) == (4, "$OMP_NUM_THREADS")
    assert threads.requested_threads(None, {"OMP_NUM_THREADS": "4,2"}) == (threads.default_threads(), "default")
    assert threads.requested_threads(None, {}) == (threads.default_threads(), "default")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_count_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="--threads must be a whole number >= 1"):
        threads.configure_threads(bad)


def test_a_bad_environment_value_is_a_config_error():
    with pytest.raises(ConfigError, match="OMNIMETA_THREADS"):
        threads.requested_threads(None, {"OMNIMETA_THREADS": "many"})


@pytest.mark.parametrize("count", [1, 2])
def test_configure_sets_torch_and_the_task_workers(count):
    assert threads.configure_threads(count) == count
    assert torch.get_num_threads() == count
    assert threads.task_threads().threads == count
    assert threads.describe_threads()["threads"] == count and threads.describe_threads()["threads_source"] == "--threads"


def test_configure_without_a_request_follows_the_environment(monkeypatch):
    monkeypatch.setenv("OMNIMETA_THREADS", "1")
    assert threads.configure_threads() == 1
    assert torch.get_num_threads() == 1
    assert threads.describe_threads()["threads_source"] == "$OMNIMETA_THREADS"


def test_use_threads_passes_the_count_on_to_the_processes_this_one_starts():
    assert threads.use_threads(1) == 1 and os.environ[threads.THREADS_ENV] == "1"
    assert threads.rank_environment(2)[threads.THREADS_ENV] == "1"  # each rank of --nproc gets it too
    os.environ.pop(threads.THREADS_ENV)
    threads.use_threads(None)  # no --threads: the environment is left as it was
    assert threads.THREADS_ENV not in os.environ


def test_the_launcher_gives_each_rank_its_share_and_the_wait_setting():
    environment = threads.rank_environment(2, environ={})
    assert environment == {threads.THREADS_ENV: str(threads.rank_threads(2)),
                           "OMP_NUM_THREADS": str(threads.rank_threads(2)), "GOMP_SPINCOUNT": str(threads.SPIN_COUNT)}
    assert threads.rank_environment(2, requested=3, environ={"OMP_WAIT_POLICY": "PASSIVE"}) == {
        threads.THREADS_ENV: "3", "OMP_NUM_THREADS": "3"}


def test_wait_settings_go_into_the_environment_unless_the_user_chose():
    assert threads.wait_environment({}) == {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)}
    assert threads.wait_environment({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    environ = {"GOMP_SPINCOUNT": "5"}
    threads.prepare_environment(environ)
    assert environ == {"GOMP_SPINCOUNT": "5"}
    environ = {}
    threads.prepare_environment(environ)
    assert environ == {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)}


def test_the_package_prepares_the_environment_before_torch_loads():
    """In a fresh interpreter, importing the package puts libgomp's spin into the environment before torch loads."""
    environment = {k: v for k, v in os.environ.items() if k not in threads.WAIT_ENV}
    code = ("import os\nimport l2l_omniglot.threads as t\nimport l2l_omniglot\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), t.describe_threads()['omp_wait_in_effect'])")
    finished = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True,
                              text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == [str(threads.SPIN_COUNT), "True"]


def test_task_threads_return_results_in_task_order_from_several_threads():
    seen = set()

    def work(item):
        seen.add(threading.get_ident())
        torch.randn(64, 64) @ torch.randn(64, 64)  # give the other worker a chance to start
        return item * item, torch.get_num_threads()

    pool = threads.TaskThreads(2)
    try:
        results = pool.map(work, range(40))
    finally:
        pool.close()
    assert [square for square, _ in results] == [i * i for i in range(40)]
    assert {torch_threads for _, torch_threads in results} == {1}  # every worker computes on one torch thread
    assert threading.get_ident() not in seen


def test_one_task_thread_runs_in_the_caller():
    pool = threads.TaskThreads(1)
    assert pool.map(lambda item: (item, threading.get_ident()), [1, 2]) == [(1, threading.get_ident()),
                                                                            (2, threading.get_ident())]


def test_task_threads_compute_the_same_numbers_as_one_thread():
    """A task's gradient does not depend on which worker, or how many workers, computed it."""
    torch.manual_seed(0)
    weight = torch.randn(16, 1, 3, 3, requires_grad=True)
    images = [torch.randn(5, 1, 28, 28) for _ in range(8)]

    def gradient(t):
        loss = torch.nn.functional.conv2d(images[t], weight, padding=1).relu().pow(2).mean()
        return torch.autograd.grad(loss, weight)[0]

    torch.set_num_threads(1)
    one = threads.TaskThreads(1).map(gradient, range(8))
    pool = threads.TaskThreads(2)
    try:
        two = pool.map(gradient, range(8))
    finally:
        pool.close()
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def run_with_threads(count: int, data_root, out) -> tuple:
    finished = omnimeta("run", "--solver", "fomaml", "--iterations", "4", "--meta-batch", "4", "--val-every", "2",
                        "--val-tasks", "4", "--eval-tasks", "6", "--seed", "3", "--device", "cpu", "--threads", count,
                        "--data-root", data_root, "--out", out, "--json",
                        env={"OMP_NUM_THREADS": None, threads.THREADS_ENV: None})
    assert finished.returncode == 0, finished.stderr
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (out / "metrics.jsonl").read_text().splitlines()]
    result = json.loads((out / "result.json").read_text())
    return metrics, result


@pytest.mark.slow
def test_a_run_gives_the_same_numbers_on_one_thread_and_on_two(data_root, tmp_path):
    """The default FO-MAML run is bit for bit the same whatever --threads says, and result.json records it."""
    one_metrics, one = run_with_threads(1, data_root, tmp_path / "one")
    two_metrics, two = run_with_threads(2, data_root, tmp_path / "two")
    assert (one["threads"], one["threads_source"]) == (1, "--threads")
    assert (two["threads"], two["threads_source"]) == (2, "--threads")
    assert one_metrics == two_metrics
    timing = {"threads", "train_seconds", "step_seconds", "iterations_per_second", "eval_seconds", "peak_rss_mb"}
    assert {k: v for k, v in one.items() if k not in timing} == {k: v for k, v in two.items() if k not in timing}
