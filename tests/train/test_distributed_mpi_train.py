"""``minicnn train`` across 2 processes under mpiexec (oversubscribed: CI has 2 cores): --nproc
end to end, and a 2-rank checkpoint resumed on one process.

This file is also the ranks' program: ``mpiexec -n 2 python
tests/train/test_distributed_mpi_train.py train_interrupted OUT``.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("mpi4py", reason="needs pip install 'minicnn[distributed]' (run by .ci/run)")
from minicnn.distributed import launch  # noqa: E402

WORLD = 2


# ---- the ranks' side -----------------------------------------------------------------------------
def case_train_interrupted(out):
    """2-rank training of 2 epochs, stopped (as if killed) after epoch 1's checkpoint."""
    from minicnn import train as T
    from minicnn.train import loop

    original = loop._run_epoch

    def stop_before_second(epoch, *args, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(epoch, *args, **kwargs)

    loop._run_epoch = stop_before_second
    try:
        T.train(train_config(os.environ["MINICNN_TEST_DATA"], out), log=print)
    except KeyboardInterrupt:
        print("stopped after epoch 1", flush=True)


def train_config(data, out):
    from minicnn import train as T

    return T.TrainConfig(
        data=data,
        out=os.path.join(out, "run"),
        epochs=2,
        batch_size=8,
        workers=0,
        progress=False,
        warmup_epochs=0.5,
    )


# ---- the tests' side -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from minicnn.data import builtin_dataset

    return builtin_dataset(4, 3, cache=str(tmp_path_factory.mktemp("cache")))


def _minicnn(args, env, cwd, timeout=300):
    r = subprocess.run(
        [sys.executable, "-m", "minicnn", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    return r


def test_train_nproc_2_end_to_end_then_eval_and_resume_on_one_process(tmp_path):
    """What a user runs: --nproc 2 starts mpiexec; rank 0 alone logs and writes the run folder;
    the validation accuracy is the whole set's (``minicnn eval`` on one process agrees)."""
    from minicnn import train as T

    env = dict(os.environ, MINICNN_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "run"
    r = _minicnn(
        [
            "train",
            "--nproc",
            "2",
            "--builtin-per-class",
            "4",
            "3",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--workers",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ],
        env,
        tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert sum(line.startswith("done: val top-1 ") for line in lines) == 1, r.stdout
    assert sum(line.startswith("epoch 1/1") for line in lines) == 1, r.stdout
    assert "2 processes" in r.stdout and "Traceback" not in r.stderr
    rows = T.read_metrics(out / "metrics.csv")
    assert len(rows) == 1
    data = next((tmp_path / "cache").iterdir())
    r = _minicnn(
        ["eval", "--checkpoint", str(out / "last.npz"), "--data", str(data), "--workers", "0"],
        env,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert f"top-1 {100 * rows[0]['val_top1']:.2f}%" in r.stdout, (r.stdout, rows)
    r = _minicnn(["train", "--resume", str(out)], env, tmp_path)
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stdout + r.stderr


def test_a_two_rank_checkpoint_resumes_on_one_process(tmp_path, tiny_data):
    from minicnn import train as T

    env = dict(os.environ, MINICNN_TEST_DATA=tiny_data)
    command = launch.mpiexec_command(WORLD) + [
        sys.executable,
        os.path.abspath(__file__),
        "train_interrupted",
        str(tmp_path),
    ]
    r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "stopped after epoch 1" in r.stdout, r.stdout + r.stderr
    run = tmp_path / "run"
    assert len(T.read_metrics(run / "metrics.csv")) == 1
    summary = T.train(
        T.TrainConfig(workers=0, progress=False), resume=str(run), log=lambda *a: None
    )
    assert summary["epochs"] == 2
    assert [r["epoch"] for r in T.read_metrics(run / "metrics.csv")] == [1, 2]


if __name__ == "__main__":
    globals()[f"case_{sys.argv[1]}"](sys.argv[2])
