"""minicnn.distributed across 2 processes under mpiexec (oversubscribed: CI has 2 cores).
(``minicnn train`` over 2 ranks: test_distributed_mpi_train.py.)

This file is also the ranks' program: ``mpiexec -n 2 python tests/train/test_distributed_mpi.py CASE
OUT``.
The "equivalence" case trains on every rank and rank 0 saves what it got; the tests compare that
with one process trained on the whole batch. Each mpiexec run has a time limit.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn import models, nn, optim
from minicnn.models.vgg import make_layers

pytest.importorskip("mpi4py", reason="needs pip install 'minicnn[distributed]' (run by .ci/run)")
from minicnn.distributed import launch  # noqa: E402

WORLD, B, STEPS = 2, 4, 3  # 2 ranks x batch B against 1 process x batch 2B
# ReLU networks are piecewise linear: a rounding difference that moves an activation across 0
# changes a gradient by a finite step. Sizes and learning rate are chosen so that a 1e-7 relative
# perturbation of the initial weights moves the result by < 1e-5 (about 2e-6 here); ResNet-20 at
# 32x32 with lr 0.05 would not be (1e-2: the comparison would measure chaos, not DDP).
SIDE = {"vgg": 32, "resnet20": 16, "vgg_no_sync": 32}  # VGG's five pools need 32x32


# ---- what the ranks and the reference both run ---------------------------------------------------


def vgg_like():
    """VGG-11's layout (configuration A: 8 convs, 5 pools) at 1/8 width, a small classifier."""
    minicnn.manual_seed(0)
    cfg = [8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"]
    return nn.Sequential(
        make_layers(cfg), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def resnet20(sync):
    minicnn.manual_seed(0)
    model = models.resnet20(num_classes=10)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if sync else model


def batches(seed, side):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((STEPS, WORLD * B, 3, side, side)).astype(np.float32)
    return x, rng.integers(0, 10, (STEPS, WORLD * B))


def train(model, x, y, rows, accumulate=1):
    """STEPS steps of SGD with momentum on rows ``rows`` of each batch (in ``accumulate`` parts)."""
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    for step in range(STEPS):
        opt.zero_grad()
        parts = np.array_split(np.arange(rows.start, rows.stop), accumulate)
        for i, part in enumerate(parts):
            sync = getattr(model, "no_sync", None)
            context = sync() if sync is not None and i < len(parts) - 1 else _nothing()
            with context:
                loss = F.cross_entropy(
                    model(minicnn.tensor(x[step][part])), minicnn.tensor(y[step][part])
                )
                (loss * (len(part) / (rows.stop - rows.start))).backward()
        opt.step()
    return model


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Branchy(nn.Module):
    """``b`` is used only when asked (rank 0), ``never`` never."""

    def __init__(self):
        super().__init__()
        minicnn.manual_seed(1)
        self.a, self.b, self.never = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x, use_b):
        return self.a(x) + self.b(x) if use_b else self.a(x)


def branchy_grads(model, rank):
    x = np.random.default_rng(rank).standard_normal((5, 4)).astype(np.float32)
    model(minicnn.tensor(x), rank == 0).sum().backward()


# ---- the ranks' side -----------------------------------------------------------------------------


def case_equivalence(out):
    import minicnn.distributed as dist
    from minicnn.data import DistributedSampler

    dist.init_process_group()
    rank = dist.get_rank()
    rows = slice(rank * B, (rank + 1) * B)
    results, arrays = {}, {}
    for name, build, accumulate in (
        ("vgg", vgg_like, 1),
        ("resnet20", lambda: resnet20(True), 1),
        ("vgg_no_sync", vgg_like, 2),
    ):
        model = nn.parallel.DistributedDataParallel(build(), bucket_cap_mb=0.05)
        results[f"{name}_buckets"] = len(model._buckets)
        x, y = batches(1, SIDE[name])
        train(model, x, y, rows, accumulate)
        arrays.update({f"{name}/{k}": v for k, v in model.module.state_dict().items()})
    ddp = nn.parallel.DistributedDataParallel(Branchy(), find_unused_parameters=True)
    branchy_grads(ddp, rank)
    arrays.update(
        {
            f"unused/{n}": p.grad.numpy()
            for n, p in ddp.module.named_parameters()
            if p.grad is not None
        }
    )
    results["buffers"] = _buffers_after_sync(dist, rank)
    results["unused_error"] = _unused_error()
    results["sampler"] = _sampler_shards(dist, DistributedSampler)
    results["collectives"] = _collectives(dist)
    if rank == 0:
        np.savez(os.path.join(out, "arrays.npz"), **arrays)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f)


def _buffers_after_sync(dist, rank):
    """Plain BatchNorm's running mean on each rank after a forward on its own data, and after
    sync_buffers (rank 0's everywhere)."""
    ddp = nn.parallel.DistributedDataParallel(nn.BatchNorm2d(2))
    ddp(minicnn.ones(2, 2, 1, 1) * (rank + 1) + minicnn.randn(2, 2, 1, 1))
    seen = []
    for _ in range(2):
        gathered = []
        dist.all_gather_object(gathered, ddp.module.running_mean.tolist())
        seen.append(gathered)
        ddp.sync_buffers()
    return seen


def _unused_error():
    ddp = nn.parallel.DistributedDataParallel(Branchy(), bucket_cap_mb=1e-5)
    ddp(minicnn.ones(2, 4), False).sum().backward()
    try:
        ddp(minicnn.ones(2, 4), False)
    except RuntimeError as e:
        return str(e)
    return None


def _sampler_shards(dist, DistributedSampler):
    sampler = DistributedSampler(range(11), seed=4)
    shards = []
    dist.all_gather_object(shards, list(sampler))
    return shards


def _collectives(dist):
    rank = dist.get_rank()
    t = minicnn.tensor([1.0, 2.0]) * (rank + 1)
    dist.all_reduce(t)
    avg = np.array([rank + 1.0])
    dist.all_reduce(avg, "avg")
    mx = np.array([rank, -rank], dtype=np.int64)
    dist.all_reduce(mx, dist.ReduceOp.MAX)
    b = minicnn.tensor([float(rank)] * 3)
    dist.broadcast(b, src=1)
    parts = [minicnn.zeros(2) for _ in range(2)]
    dist.all_gather(parts, minicnn.tensor([rank, rank * 10.0]))
    dist.barrier()
    return {
        "sum": t.tolist(),
        "avg": avg.tolist(),
        "max": mx.tolist(),
        "broadcast": b.tolist(),
        "all_gather": [p.tolist() for p in parts],
        "world": dist.get_world_size(),
    }


def case_fail(out):
    import minicnn.distributed as dist

    dist.init_process_group()
    if dist.get_rank() == 1:
        time.sleep(0.5)
        raise ValueError("rank 1 failed on purpose")
    while True:  # rank 0 waits in a collective that rank 1 never joins
        dist.all_reduce(np.zeros(4))


def case_sigint(out):
    import minicnn.distributed as dist

    dist.init_process_group()
    with open(os.path.join(out, f"pid{dist.get_rank()}"), "w") as f:
        f.write(str(os.getpid()))
    while True:
        dist.all_reduce(np.zeros(4))
        time.sleep(0.01)


# ---- the tests' side -----------------------------------------------------------------------------


def run_ranks(case, out, timeout=180, wait=True):
    command = launch.mpiexec_command(WORLD) + [
        sys.executable,
        os.path.abspath(__file__),
        case,
        str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MINICNN_NUM_THREADS="1")
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    if not wait:
        return proc
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"mpiexec {case} did not finish in {timeout} s:\n{output}")
    return proc.returncode, output


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    rc, output = run_ranks("equivalence", out)
    assert rc == 0, output
    with open(out / "results.json") as f:
        results = json.load(f)
    return results, dict(np.load(out / "arrays.npz"))


def _assert_same_state(arrays, prefix, reference):
    state = reference.state_dict()
    for key, want in state.items():
        got = arrays[f"{prefix}/{key}"]
        scale = max(float(np.abs(want).max()), 1e-12)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=key)


@pytest.mark.parametrize(
    "name,build,accumulate",
    [("vgg", vgg_like, 1), ("resnet20", lambda: resnet20(False), 1), ("vgg_no_sync", vgg_like, 2)],
)
def test_two_ranks_equal_one_process_on_the_double_batch(equivalence, name, build, accumulate):
    results, arrays = equivalence
    assert results[f"{name}_buckets"] > 1  # the small cap makes several buckets
    x, y = batches(1, SIDE[name])
    _assert_same_state(arrays, name, train(build(), x, y, slice(0, WORLD * B)))


def test_find_unused_parameters_averages_what_was_used_and_leaves_the_rest(equivalence):
    _, arrays = equivalence
    grads = []
    for rank in range(WORLD):
        model = Branchy()
        branchy_grads(model, rank)
        grads.append(
            {n: p.grad.numpy() if p.grad is not None else 0 for n, p in model.named_parameters()}
        )
    for name in ("a.weight", "a.bias", "b.weight", "b.bias"):
        want = (grads[0][name] + grads[1][name]) / WORLD
        np.testing.assert_allclose(arrays[f"unused/{name}"], want, rtol=1e-6, err_msg=name)
    assert "unused/never.weight" not in arrays  # unused on every rank: .grad stays None


def test_sync_buffers_gives_every_rank_rank_0s_running_statistics(equivalence):
    before, after = equivalence[0]["buffers"]
    assert before[0] != before[1]
    assert after[0] == after[1] == before[0]


def test_a_parameter_without_gradient_is_named_at_the_next_forward(equivalence):
    message = equivalence[0]["unused_error"]
    assert message is not None and "find_unused_parameters=True" in message
    for name in ("b.weight", "b.bias", "never.weight", "never.bias"):
        assert name in message
    assert "a.weight" not in message


def test_sampler_shards_from_the_process_group(equivalence):
    shards = equivalence[0]["sampler"]
    assert [len(s) for s in shards] == [6, 6]
    assert set(shards[0]) | set(shards[1]) == set(range(11))
    assert len(set(shards[0]) & set(shards[1])) == 1  # the one padding sample


def test_collectives(equivalence):
    c = equivalence[0]["collectives"]
    assert c == {
        "sum": [3.0, 6.0],
        "avg": [1.5],
        "max": [1, 0],
        "broadcast": [1.0, 1.0, 1.0],
        "all_gather": [[0.0, 0.0], [1.0, 10.0]],
        "world": 2,
    }


def test_the_gpu_smoke_test_runs_its_checks_over_mpi_on_the_cpu():
    """scripts/gpu_check.sh runs it on cuda over NCCL; here the same checks run on 2 cpu ranks."""
    command = launch.mpiexec_command(WORLD) + [
        sys.executable,
        "-m",
        "minicnn.distributed.smoke",
        "--device",
        "cpu",
    ]
    r = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("collectives and DDP + SyncBatchNorm steps agree") == WORLD


def test_an_exception_on_one_rank_stops_all_ranks_with_its_message(tmp_path):
    started = time.monotonic()
    rc, output = run_ranks("fail", tmp_path, timeout=60)
    assert time.monotonic() - started < 30, output
    assert rc != 0
    assert "[rank 1] ValueError: rank 1 failed on purpose" in output, output


def test_ctrl_c_stops_all_ranks(tmp_path):
    proc = run_ranks("sigint", tmp_path, wait=False)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pid*"))) < WORLD:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("pid*")]
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends mpiexec
    deadline = time.monotonic() + 30
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("mpiexec did not stop within 30 s of SIGINT")
    assert proc.returncode != 0
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)  # mpiexec may return while the last rank is still being killed
    for pid in pids:
        assert not _alive(pid), f"rank process {pid} survived Ctrl-C by 30 s"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead, only not yet reaped
        return f.read().split()[2] != "Z"


if __name__ == "__main__":
    globals()[f"case_{sys.argv[1]}"](sys.argv[2])
