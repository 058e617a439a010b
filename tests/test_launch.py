"""A run on several processes (``--nproc``, torchrun) ends where one process ends; a rank that dies is restarted
or stops the whole run with one line, and leaves no process or port behind.

Every test here starts real processes: they are slow, and they share the uninterrupted runs (one xdist group).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from l2l_omniglot import resolve_config, train_and_evaluate
from l2l_omniglot.local_ranks import free_port
from l2l_omniglot.models import ConvNet
from tests.conftest import REPO, TINY, cli_options, start_omnimeta

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("two-ranks")]

#: Meta-batch 32, 5 steps (the issue's setting), and few, quick evaluation tasks. One inner step at inner lr 0.4
#: (FO-MAML's defaults before it was tuned): with today's three, the meta-gradients of one and two ranks still agree
#: to 1e-5 (test_distributed), but after 5 Adam steps their parameters differ by about 7e-4 (relative), because Adam's first steps
#: move every element by about its learning rate whatever the gradient's size, so elements whose gradient is near
#: zero follow the rounding of the summation order.
SETTING = dict(solver="fomaml", iterations=5, meta_batch=32, queries=1, val_every=5, val_tasks=6, eval_tasks=12,
               train_inner_steps=1, inner_lr=0.4, test_inner_steps=3, device="cpu", seed=1)
ARGS = cli_options(SETTING)
#: The bias of a convolution followed by batch norm (models.conv_block) is cancelled by the normalisation: its
#: true gradient is zero, so its updates are Adam's reading of float rounding and differ with summation order.
#: Those four vectors do not change what the network computes (checked below), so equality is judged without them.
CANCELLED_BIASES = [f"features.{block}.0.bias" for block in range(4)]


def finish(process, timeout=900):  # generous: only a hang should fail here, not a busy machine
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return stdout


def final_model(run_dir: Path) -> dict:
    return torch.load(run_dir / "state.pt", weights_only=True)["solver"]["model"]


def relative_error(got: dict, expected: dict, names) -> float:
    a = torch.cat([got[name].flatten() for name in names])
    b = torch.cat([expected[name].flatten() for name in names])
    return ((a - b).norm() / b.norm()).item()


def losses(run_dir: Path) -> list:
    return [m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def one_rank(omniglot, tmp_path_factory):
    """The single-process run, on one thread like each of the two ranks, so that only the split differs."""
    out = tmp_path_factory.mktemp("one-rank") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_and_evaluate(resolve_config(**SETTING), omniglot, out)
    finally:
        torch.set_num_threads(threads)
    return out, result


def assert_same_run(two: Path, one: Path, one_result: dict):
    got, expected = final_model(two), final_model(one)
    function_parameters = [name for name in expected if name not in CANCELLED_BIASES]
    assert relative_error(got, expected, function_parameters) < 1e-5
    # The cancelled biases indeed change nothing: the 2-rank network with the 1-rank biases computes the same.
    images = torch.rand(10, 1, 28, 28)
    outputs = []
    for state in (got, {**got, **{name: expected[name] for name in CANCELLED_BIASES}}):
        model = ConvNet(SETTING.get("ways", 5))
        model.load_state_dict(state)
        outputs.append(model(images).detach())
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    result = json.loads((two / "result.json").read_text())
    assert result["ranks"] == 2 and one_result["ranks"] == 1
    for key in ("test_accuracy", "test_ci95", "val_accuracy", "test_tasks", "best_iteration"):
        assert result[key] == one_result[key], key
    assert losses(two) == pytest.approx(losses(one), rel=1e-5)



@pytest.fixture(scope="module")
def two_ranks(data_root, tmp_path_factory):
    """The uninterrupted 2-rank run (``omnimeta run --nproc 2``) and what it printed."""
    out = tmp_path_factory.mktemp("two-ranks") / "run"
    printed = finish(start_omnimeta("run", *ARGS, "--nproc", 2, "--out", out, "--json", data_root=data_root))
    return out, json.loads(printed)


def test_two_ranks_end_with_the_parameters_and_scores_of_one(one_rank, two_ranks):
    one, one_result = one_rank
    two, printed = two_ranks
    assert printed == json.loads((two / "result.json").read_text())
    files = sorted(p.name for p in two.iterdir() if not p.name.startswith("."))
    events = [name for name in files if name.startswith("events.out.tfevents.")]
    assert len(events) == 1  # rank 0's TensorBoard log alone
    assert [name for name in files if name not in events] == [
        "checkpoint.pt", "config.json", "metrics.jsonl", "result.json", "state.pt"]
    assert_same_run(two, one, one_result)


def test_two_torchrun_nodes_end_where_one_process_ends(one_rank, data_root, tmp_path):
    """Two launchers on 127.0.0.1, as on two machines: torchrun --nnodes 2 with a c10d rendezvous."""
    one, one_result = one_rank
    out, port = tmp_path / "run", free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id",
                               "two-nodes", "-m", "l2l_omniglot", "run", *ARGS, "--out", str(out), "--json"],
                              cwd=REPO, env=dict(os.environ, OMNIMETA_DATA=str(data_root), OMP_NUM_THREADS="1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    printed = [finish(node) for node in nodes]
    # Global rank 0 (on whichever node the rendezvous made it) prints the result; the other rank prints nothing.
    assert sorted(printed, key=len)[0] == ""
    assert json.loads(sorted(printed, key=len)[1]) == json.loads((out / "result.json").read_text())
    assert_same_run(out, one, one_result)


# -- a rank that dies ---------------------------------------------------------------------------------------
def descendants(pid: int) -> list:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def open_files(pid: int) -> list:
    try:
        return [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return []


def rank_processes(launcher_pid: int, run_dir: Path) -> dict:
    """``{rank: pid}`` of the 2 ranks the launcher's agent started.

    The ranks are the launcher's spawned workers (not the multiprocessing resource tracker). Their rank is in
    their Python environment only (``os.environ``, not ``/proc/PID/environ``), so rank 0 is told by what only
    it holds: the run folder's lock.
    """
    workers = [pid for pid in descendants(launcher_pid)
               if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 2, workers
    lock = str(run_dir / ".omnimeta.lock")
    holders = [pid for pid in workers if lock in open_files(pid)]
    assert len(holders) == 1, (workers, holders)
    return {0: holders[0], 1: next(pid for pid in workers if pid != holders[0])}


def listening_ports(pids) -> set:
    """The TCP ports that ``pids`` listen on (the rendezvous store, gloo's own sockets)."""
    sockets = {name[len("socket:["):-1] for pid in pids for name in open_files(pid) if name.startswith("socket:[")}
    return {port for inode, port in listening_sockets().items() if inode in sockets}


def listening_sockets() -> dict:
    """``{inode: port}`` of every listening TCP socket on this machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def start_and_wait_for_training(args: list, out: Path, data_root, env=None):
    """``omnimeta run ARGS --out OUT`` on 2 ranks, once its first iteration is logged; and its processes.

    The generous timeouts only keep a busy machine from failing the test; nothing here measures speed.
    """
    launcher = start_omnimeta("run", *ARGS, "--nproc", 2, "--out", out, "--checkpoint-every", 1, "--dist-timeout", 600,
                        *args, data_root=data_root, env=env)
    deadline = time.monotonic() + 600
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
        if launcher.poll() is not None or time.monotonic() > deadline:
            launcher.kill()
            pytest.fail(f"the run did not start training: {launcher.communicate()[1]}")
        time.sleep(0.02)
    return launcher, descendants(launcher.pid)


def assert_all_gone(pids, ports):
    """No process of the run is left, and none of the ports it listened on is bound any more."""
    deadline = time.monotonic() + 30  # the resource tracker leaves once it sees the launcher gone
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not ports & set(listening_sockets().values())


def progress_lines_and_others(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("meta-", "decode"))]


def assert_identical_run(got: Path, expected: Path):
    """The same numbers as the uninterrupted run on as many ranks: nothing differs, not even rounding."""
    result, expected_result = (json.loads((run / "result.json").read_text()) for run in (got, expected))
    for key in ("test_accuracy", "test_ci95", "val_accuracy", "test_tasks", "best_iteration", "iterations", "ranks"):
        assert result[key] == expected_result[key], key
    metrics = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (got, expected)]
    assert [m["iteration"] for m in metrics[0]] == list(range(1, SETTING["iterations"] + 1))  # each step once
    assert metrics[0] == metrics[1]
    got_model, expected_model = final_model(got), final_model(expected)
    assert all(torch.equal(got_model[name], expected_model[name]) for name in expected_model)


def test_a_killed_rank_is_restarted_and_the_run_ends_as_if_nothing_happened(two_ranks, data_root, tmp_path):
    out = tmp_path / "run"
    launcher, processes = start_and_wait_for_training(["--max-restarts", 1], out, data_root)
    os.kill(rank_processes(launcher.pid, out)[1], signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, stderr
    restarts = [json.loads(line) for line in (out / "restarts.jsonl").read_text().splitlines()]
    assert len(restarts) == 1 and restarts[0]["restart"] == 1
    resumed = restarts[0]["resumed_from_iteration"]
    assert 0 <= resumed <= SETTING["iterations"]
    assert progress_lines_and_others(stderr) == [
        f"a rank failed; restart 1 of 1: the 2 ranks continue from iteration {resumed} (saved in {out / 'state.pt'})"]
    assert_identical_run(out, two_ranks[0])


def test_a_killed_rank_without_restarts_stops_the_run_with_one_line(one_rank, data_root, tmp_path):
    one, one_result = one_rank
    out = tmp_path / "run"
    launcher, processes = start_and_wait_for_training(["--max-restarts", 0], out, data_root)
    ports = listening_ports([launcher.pid, *processes])
    assert ports  # the rendezvous store's, at least
    os.kill(rank_processes(launcher.pid, out)[1], signal.SIGKILL)
    # The launcher stops the other rank itself rather than waiting for a collective to time out (the run's
    # --dist-timeout is far longer than this guard against a hang).
    _, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode == 1
    assert progress_lines_and_others(stderr) == [
        f"Error: rank 1 of 2 was killed by SIGKILL; the other ranks were stopped. The last saved state is in {out}; "
        f"continue with: omnimeta run --resume {out} --nproc 2"]
    assert_all_gone([launcher.pid, *processes], ports)
    finish(start_omnimeta("run", "--resume", out, "--nproc", 2, data_root=data_root))
    assert_same_run(out, one, one_result)


def test_sigterm_to_the_launcher_stops_and_saves_without_a_restart(data_root, tmp_path):
    out = tmp_path / "run"
    # The agent gives the ranks 30 s to stop and save before it kills them; a busy machine may need longer.
    launcher, processes = start_and_wait_for_training(["--max-restarts", 1], out, data_root,
                                                      env={"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "300"})
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=600)
    assert launcher.returncode == 143, stderr
    iteration = torch.load(out / "state.pt", weights_only=True)["trainer"]["iteration"]
    (line,) = progress_lines_and_others(stderr)  # rank 0's, and nothing from the launcher or the other rank
    assert line.startswith("interrupted") and f"at iteration {iteration}; the state is saved" in line
    assert line.endswith(f"Continue with: omnimeta run --resume {out}")
    assert not (out / "restarts.jsonl").exists()
    assert_all_gone([launcher.pid, *processes], set())



def test_a_restart_replaces_only_the_folder_its_first_attempt_began(tmp_path):
    from l2l_omniglot.launch import begun_by

    ours, older = resolve_config("fomaml", **TINY), resolve_config("fomaml", **dict(TINY, iterations=9))
    assert not begun_by(tmp_path, ours)  # nothing there: the restart starts the run, as any new run
    (tmp_path / "config.json").write_text(json.dumps(older.to_dict()))
    assert not begun_by(tmp_path, ours)  # an older run that the first attempt refused to replace: refused again
    (tmp_path / "config.json").write_text(json.dumps(ours.to_dict()))
    assert begun_by(tmp_path, ours)
    (tmp_path / "config.json").write_text("{torn")
    assert not begun_by(tmp_path, ours)
