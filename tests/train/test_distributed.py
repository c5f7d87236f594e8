"""minicnn.distributed in one process: the sampler, SyncBatchNorm's math, the grad-ready hook, and
the errors (backend choice, missing packages, no GPU). The multi-rank runs are in
test_distributed_mpi.py (under mpiexec)."""

import sys
import types

import numpy as np
import pytest

import minicnn
import minicnn.distributed as dist
from minicnn import functional as F
from minicnn import models, nn
from minicnn.data import DataLoader, DistributedSampler
from minicnn.distributed import _nccl, launch
from minicnn.nn import sync_batchnorm

# ---- DistributedSampler ------------------------------------------------------------------------


def _shards(n, replicas, **kw):
    return [list(DistributedSampler(range(n), replicas, r, **kw)) for r in range(replicas)]


@pytest.mark.parametrize("n,replicas", [(10, 2), (11, 3), (7, 4), (3, 5)])
def test_sampler_shards_are_disjoint_and_cover_the_dataset(n, replicas):
    shards = _shards(n, replicas, shuffle=True, seed=3)
    per = -(-n // replicas)
    assert all(len(s) == per for s in shards)
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(n))
    pad = per * replicas - n
    assert len(flat) - len(set(flat)) == pad  # only the padding repeats samples
    if pad == 0:
        assert sorted(flat) == list(range(n))


def test_sampler_drop_last_cuts_to_a_multiple_without_repeats():
    shards = _shards(11, 3, shuffle=True, seed=0, drop_last=True)
    flat = [i for s in shards for i in s]
    assert [len(s) for s in shards] == [3, 3, 3] and len(set(flat)) == 9


def test_sampler_is_deterministic_per_seed_and_epoch_and_changes_with_the_epoch():
    a, b = DistributedSampler(range(50), 2, 1, seed=5), DistributedSampler(range(50), 2, 1, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(DistributedSampler(range(50), 2, 1, seed=6)) != first


def test_sampler_without_shuffle_strides_through_the_dataset():
    assert _shards(5, 2, shuffle=False) == [[0, 2, 4], [1, 3, 0]]


def test_sampler_errors():
    with pytest.raises(ValueError, match=r"invalid rank 2.*\[0, 1\]"):
        DistributedSampler(range(4), 2, 2)
    with pytest.raises(ValueError, match="num_replicas must be >= 1, got 0"):
        DistributedSampler(range(4), 0, 0)
    with pytest.raises(RuntimeError, match="pass num_replicas and rank"):
        DistributedSampler(range(4))
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(list(range(4)), sampler=DistributedSampler(range(4), 2, 0), shuffle=True)


class _Squares:
    def __len__(self):
        return 13

    def __getitem__(self, i):
        return np.full(2, i * i, dtype=np.float32), i


@pytest.mark.parametrize("workers", [0, 1])
def test_dataloader_with_sampler_yields_the_ranks_shard_per_epoch(workers):
    ds = _Squares()
    labels = {}
    for rank in (0, 1):
        sampler = DistributedSampler(ds, 2, rank, seed=1)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=workers)
        assert len(loader) == 3
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            got = np.concatenate([y for _, y in loader])
            sampler.set_epoch(epoch)
            assert got.tolist() == list(sampler)
            labels[rank, epoch] = got
        loader.close()
    for epoch in (0, 1):
        assert set(labels[0, epoch]) | set(labels[1, epoch]) == set(range(13))
    assert labels[0, 0].tolist() != labels[0, 1].tolist()


# ---- the per-parameter grad-ready hook ---------------------------------------------------------


def test_post_accumulate_grad_hook_fires_once_with_the_full_gradient_last_layer_first():
    minicnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    seen = []
    handles = [
        p.register_post_accumulate_grad_hook(lambda t, n=n: seen.append((n, t.grad.numpy().copy())))
        for n, p in model.named_parameters()
    ]
    x = minicnn.randn(5, 3)
    out = model(x)
    (out.sum() + out.sum()).backward()  # two consumers: the hook sees their sum, once
    names = [n for n, _ in seen]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert names.index("2.weight") < names.index("0.weight")  # backward order: last layer first
    for name, grad in seen:
        np.testing.assert_array_equal(grad, dict(model.named_parameters())[name].grad.numpy())
    handles[0].remove()
    seen.clear()
    model(x).sum().backward()
    assert "0.weight" not in [n for n, _ in seen] and len(seen) == 3
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        out.register_post_accumulate_grad_hook(print)


# ---- SyncBatchNorm's math in a world of one ------------------------------------------------------


class _OneRank:
    """Stands in for minicnn.distributed inside sync_batchnorm: a world of one rank."""

    @staticmethod
    def get_world_size():
        return 1

    @staticmethod
    def all_gather(outputs, array):
        outputs[0][...] = array

    @staticmethod
    def all_reduce(array, op="sum"):
        pass


def test_merge_stats_equals_the_statistics_of_the_concatenation():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 3)) * 5 + 100 for n in (4, 7, 1)]
    rows = np.stack(
        [np.concatenate([[len(p)], p.mean(0), ((p - p.mean(0)) ** 2).sum(0)]) for p in parts]
    )
    total, mean, m2 = sync_batchnorm._merge_stats(rows)
    whole = np.concatenate(parts)
    assert total == 12
    np.testing.assert_allclose(mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m2 / total, whole.var(0), rtol=1e-10)


def test_sync_batchnorm_function_matches_batch_norm_forward_backward_and_running_stats(monkeypatch):
    monkeypatch.setattr(sync_batchnorm, "dist", _OneRank)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 5, 2))
    w, b = rng.standard_normal(3) + 1, rng.standard_normal(3)
    dy = rng.standard_normal(x.shape)
    grads, stats = [], []
    for fn in ("sync", "plain"):
        xt = minicnn.tensor(x, requires_grad=True)
        wt, bt = minicnn.tensor(w, requires_grad=True), minicnn.tensor(b, requires_grad=True)
        rm, rv = minicnn.zeros(3, dtype="float64"), minicnn.ones(3, dtype="float64")
        y = (
            sync_batchnorm.SyncBatchNormFunction.apply(xt, rm, rv, wt, bt, 0.1, 1e-5)
            if fn == "sync"
            else F.batch_norm(xt, rm, rv, wt, bt, True, 0.1, 1e-5)
        )
        y.backward(dy)
        grads.append([y.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()])
        stats.append([rm.numpy(), rv.numpy()])
    for a, c in zip(grads[0] + stats[0], grads[1] + stats[1]):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-11)


def test_sync_batchnorm_function_passes_gradcheck(monkeypatch):
    monkeypatch.setattr(sync_batchnorm, "dist", _OneRank)
    rng = np.random.default_rng(2)
    x = minicnn.tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    w = minicnn.tensor(rng.standard_normal(2) + 1, requires_grad=True)
    b = minicnn.tensor(rng.standard_normal(2), requires_grad=True)
    assert minicnn.gradcheck(
        lambda x, w, b: sync_batchnorm.SyncBatchNormFunction.apply(x, None, None, w, b, 0.1, 1e-5),
        (x, w, b),
    )


def test_convert_sync_batchnorm_shares_parameters_and_keeps_keys_and_falls_back_alone():
    minicnn.manual_seed(0)
    model = models.resnet20(num_classes=4)
    before = model.state_dict()
    weight = model.bn1.weight
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model and type(model.bn1) is nn.SyncBatchNorm
    assert model.bn1.weight is weight
    assert list(model.state_dict()) == list(before)
    n_sync = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    assert n_sync == 19 and not any(type(m) is nn.BatchNorm2d for m in model.modules())
    bn = nn.BatchNorm2d(3)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    x = minicnn.randn(4, 3, 2, 2)
    np.testing.assert_allclose(sync(x).numpy(), nn.BatchNorm2d(3)(x).numpy(), rtol=1e-6)
    assert sync.num_batches_tracked.item() == 1  # not initialized: plain batch_norm, counted


# ---- process group errors ----------------------------------------------------------------------


def test_queries_before_init_say_what_to_call():
    assert not dist.is_initialized()
    for fn in (dist.get_rank, dist.get_world_size, dist.barrier):
        with pytest.raises(RuntimeError, match="init_process_group"):
            fn()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(np.zeros(2))
    with pytest.raises(RuntimeError, match="DistributedDataParallel: call .*init_process_group"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))


def test_unknown_backend_and_reduce_op_are_named():
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        dist.init_process_group("gloo")
    with pytest.raises(ValueError, match="unknown op 'mean'"):
        dist._common.as_reduce_op("mean")
    with pytest.raises(TypeError, match="AVG needs a floating-point tensor, got dtype int64"):
        dist._common.check_dtype("all_reduce", np.zeros(2, np.int64), dist.ReduceOp.AVG)
    with pytest.raises(TypeError, match="dtype bool is not supported"):
        dist._common.check_dtype("broadcast", np.zeros(2, bool))


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'minicnn\[distributed\]'"):
        dist.init_process_group("mpi")
    assert not dist.is_available()


def test_nccl_without_cupy_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(ImportError, match="backend 'nccl' needs CuPy.*nvidia-nccl-cu12"):
        _nccl.import_nccl()
    assert not dist.is_nccl_available()
    assert dist.process_group._default_backend() == "mpi"  # None: MPI where NCCL can't run


def _fake_cupy(count):
    class CUDARuntimeError(Exception):
        pass

    runtime = types.SimpleNamespace(getDeviceCount=lambda: count, CUDARuntimeError=CUDARuntimeError)
    used = []
    device = lambda i: types.SimpleNamespace(use=lambda: used.append(i))  # noqa: E731
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime, Device=device)), used


def test_a_rank_that_cannot_see_its_gpu_says_so():
    cupy, used = _fake_cupy(2)
    assert _nccl.select_gpu(cupy, rank=3, local_rank=1) == 1 and used == [1]
    cupy, used = _fake_cupy(1)
    with pytest.raises(
        RuntimeError,
        match=r"rank 5 \(local rank 1\) on host .* cannot see its "
        r"GPU: 1 GPU\(s\) visible",
    ):
        _nccl.select_gpu(cupy, rank=5, local_rank=1)
    assert used == []


def test_nccl_group_rejects_host_arrays():
    group = object.__new__(_nccl.NCCLGroup)
    group.cupy = types.SimpleNamespace(ndarray=type(None))
    with pytest.raises(TypeError, match="backend 'nccl' works on cuda tensors.*backend='mpi'"):
        group._check("all_reduce", np.zeros(3, np.float32))


def test_smoke_test_without_a_gpu_exits_2_with_the_reason(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)
    from minicnn.distributed import smoke

    assert smoke.main([]) == 2
    err = capsys.readouterr().err
    try:  # the first missing piece is named: mpi4py (no [distributed] extra), else CuPy
        import mpi4py  # noqa: F401
    except ImportError:
        assert "cannot run here" in err and "mpi4py" in err, err
    else:
        assert "cannot run here: backend 'nccl' needs CuPy" in err, err


def test_mpiexec_command_validates_nproc():
    with pytest.raises(ValueError, match="nproc must be an integer >= 1, got 0"):
        launch.mpiexec_command(0, mpiexec="mpiexec")


# ---- training helpers in a world of one ---------------------------------------------------------


def test_training_helpers_in_a_world_of_one(monkeypatch):
    from minicnn.distributed import training

    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(key, raising=False)
    world = training.join("cpu")
    assert (world.rank, world.size, world.main, world.distributed) == (0, 1, True, False)
    assert world.broadcast("x") == "x" and not dist.is_initialized()
    assert training.sum_over_ranks({"a": 2, "b": 1.5}, world) == {"a": 2, "b": 1.5}
    assert training.per_rank_batch(32, world) == 32


def test_global_batch_must_divide_over_the_ranks():
    from minicnn.distributed import training

    assert training.per_rank_batch(32, training.World(1, 4)) == 8
    with pytest.raises(
        ValueError,
        match="--batch-size 30 .* divisible by the number of processes "
        r"\(4\)",
    ):
        training.per_rank_batch(30, training.World(0, 4))


def test_eval_shards_cover_every_sample_exactly_once():
    from minicnn.distributed import training

    shards = [list(training.EvalShard(11, training.World(r, 3))) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 3]
    assert sorted(i for s in shards for i in s) == list(range(11))


def test_nproc_is_stripped_from_what_the_ranks_run():
    from minicnn.commands.train import without_nproc as _without_nproc

    assert _without_nproc(["train", "--nproc", "2", "--epochs", "1", "--nproc=3"]) == [
        "train",
        "--epochs",
        "1",
    ]


def test_nproc_below_one_is_a_usage_error(capsys):
    from minicnn.cli import main

    assert main(["train", "--nproc", "0"]) == 2
    assert "--nproc must be >= 1, got 0" in capsys.readouterr().err
