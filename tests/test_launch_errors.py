"""Bad distributed input, and a rendezvous nobody answers: one line, exit status 2, no run folder."""
import pytest
import torch

from l2l_omniglot.local_ranks import free_port
from tests.conftest import TINY_CLI, invoke, start_omnimeta


@pytest.mark.parametrize("args,message", [
    (["--nproc", "3", "--meta-batch", "2"], "--nproc 3 is larger than --meta-batch 2"),
    (["--nproc", "2", "--solver", "transfer"], "the transfer solver cannot split a meta-batch across ranks"),
    (["--nproc", "2", "--backend", "nccl"], "--backend nccl needs a CUDA GPU for every rank"),
    (["--nproc", "0"], "0 is not in the range 1<=x<=256"),
    (["--nproc", "2", "--dist-timeout", "1e300"], "1e+300 is not in the range 0<x<=604800"),
])
def test_bad_distributed_input_is_one_line_and_exit_2(args, message, data_root, tmp_path):
    if "nccl" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("run", "--data-root", data_root, "--out", tmp_path / "run", "--device", "cpu", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_nccl_without_gpus_under_torchrun_is_one_line_and_exit_2(data_root, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for name, value in dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT="1").items():
        monkeypatch.setenv(name, value)
    result = invoke("run", "--data-root", data_root, "--out", tmp_path / "run", "--backend", "nccl")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--backend nccl needs a CUDA GPU" in result.stderr


@pytest.mark.slow
def test_an_unreachable_rendezvous_is_one_line_and_exit_2_within_the_timeout(data_root, tmp_path):
    port = free_port()  # nobody listens on it
    env = dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    process = start_omnimeta("run", *TINY_CLI, "--out", tmp_path / "run", "--dist-timeout", 2, data_root=data_root, env=env)
    _, stderr = process.communicate(timeout=300)  # a guard against a hang, not a speed test
    assert process.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: rank 1: could not join the 2 ranks at 127.0.0.1:{port} within 2 s")
    assert not (tmp_path / "run").exists()

