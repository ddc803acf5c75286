"""The global batch sampler, partitions, and DataLoader worker safety (fork and spawn)."""

from __future__ import annotations

import itertools
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from hpc_seaice.data.loading.dataset import GlobalBatchSampler, ShardedDataset, collate, partition
from hpc_seaice.errors import UserError


def rank_batches(n, B, W, seed, steps, start_sample=0):
    """Per global step, the list of each rank's local batch (dataset indices)."""
    out = []
    iters = [
        iter(GlobalBatchSampler(n, global_batch=B, rank=r, world_size=W, seed=seed, start_sample=start_sample))
        for r in range(W)
    ]
    for _ in range(steps):
        out.append([list(itertools.islice(it, B // W)) for it in iters])
    return out


@pytest.mark.parametrize("n, B", [(12, 6), (10, 6), (7, 12)])
def test_sampler_union_of_ranks_equals_single_rank(n, B):
    steps = 9
    single = [b[0] for b in rank_batches(n, B, 1, seed=3, steps=steps)]
    for W in (2, 3):
        multi = rank_batches(n, B, W, seed=3, steps=steps)
        for s in range(steps):
            assert sum(multi[s], []) == single[s]  # concatenated in rank order
            r = 1
            assert multi[s][r] == single[s][r * B // W : (r + 1) * B // W]
    stream = sum(single, [])
    # remainder policy: every epoch is a permutation; nothing dropped or repeated, even when an
    # epoch boundary falls inside a global batch
    for e in range(len(stream) // n):
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n))


def test_sampler_reshuffles_per_epoch_deterministically():
    n = 20
    s = GlobalBatchSampler(n, global_batch=4, rank=0, world_size=1, seed=7)
    stream = list(itertools.islice(iter(s), 3 * n))
    epochs = [stream[i * n : (i + 1) * n] for i in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert epochs[0] == np.random.default_rng((7, 0)).permutation(n).tolist()
    again = GlobalBatchSampler(n, global_batch=4, rank=0, world_size=1, seed=7)
    assert list(itertools.islice(iter(again), 3 * n)) == stream
    other = GlobalBatchSampler(n, global_batch=4, rank=0, world_size=1, seed=8)
    assert list(itertools.islice(iter(other), n)) != epochs[0]


@pytest.mark.parametrize("W_before, W_after", [(1, 1), (2, 3), (3, 1)])
def test_resume_from_start_sample_continues_the_stream(W_before, W_after):
    n, B, seed = 11, 6, 5
    full = rank_batches(n, B, W_before, seed, steps=10)
    resumed = rank_batches(n, B, W_after, seed, steps=6, start_sample=4 * B)
    for k in range(6):
        assert sum(resumed[k], []) == sum(full[4 + k], [])


def test_positions_and_indices():
    n, B, W = 10, 6, 3
    samplers = [GlobalBatchSampler(n, global_batch=B, rank=r, world_size=W, seed=1) for r in range(W)]
    assert samplers[1].positions(2).tolist() == [14, 15]
    assert np.concatenate([s.positions(2) for s in samplers]).tolist() == samplers[0].global_positions(2).tolist()
    first = rank_batches(n, B, W, 1, steps=3)
    assert samplers[2].indices(samplers[2].positions(2)).tolist() == first[2][2]
    with pytest.raises(UserError, match="train.batch_size"):
        GlobalBatchSampler(n, global_batch=5, rank=0, world_size=2, seed=0)


@pytest.mark.parametrize("n, W", [(10, 3), (2, 4), (9, 3), (0, 2)])
def test_partition(n, W):
    parts = [partition(n, r, W) for r in range(W)]
    assert [i for p in parts for i in p] == list(range(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def _batches(ds, steps=4, **loader_options):
    """Rank 1 of 2's first ``steps`` batches (global batch 8, from sample 8) through a plain torch
    DataLoader built with ``loader_options`` (workers, start method, collate function)."""
    sampler = GlobalBatchSampler(len(ds), global_batch=8, rank=1, world_size=2, seed=0, start_sample=8)
    loader = DataLoader(ds, batch_size=sampler.local_batch, sampler=sampler, persistent_workers=False, **loader_options)
    return [b.clone() for b in itertools.islice(iter(loader), steps)]


def test_workers_fork_and_spawn_give_identical_tensors(tiny_dataset):
    ds = ShardedDataset(tiny_dataset, split="train")
    reference = _batches(ds, num_workers=0)  # also leaves handles open in this process before forking
    assert reference[0].shape == (4, 5, 32, 32)
    for context, collate_fn in (("fork", None), ("fork", collate), ("spawn", None)):
        got = _batches(ds, num_workers=2, multiprocessing_context=context, collate_fn=collate_fn)
        assert all(torch.equal(a, b) for a, b in zip(reference, got)), context
    # the expected samples, independently of the DataLoader
    sampler = GlobalBatchSampler(len(ds), global_batch=8, rank=1, world_size=2, seed=0)
    idx = sampler.indices(sampler.positions(1))
    assert torch.equal(reference[0], torch.stack([ds[int(i)] for i in idx]))


def test_dataset_is_picklable_without_open_handles(tiny_dataset):
    ds = ShardedDataset(tiny_dataset, split="validation")
    x = ds[1]
    assert ds._handles  # opened lazily on first read
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone._handles
    assert torch.equal(clone[1], x)
    assert len(pickle.dumps(ds)) < 200_000


def test_batched_fetch_and_pass_through_collate(tiny_dataset):
    ds = ShardedDataset(tiny_dataset, split="train")
    idx = [5, 0, 40, 5]
    views = ds.__getitems__(idx)
    expected = torch.stack([ds[i] for i in idx])
    batch = collate(views)
    assert torch.equal(batch, expected)
    assert batch.data_ptr() == views[0].data_ptr()  # handed over, not copied
    assert torch.equal(default_collate(views), expected)
    assert torch.equal(collate([torch.zeros(2), torch.ones(2)]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    loader = DataLoader(ds, batch_size=4, collate_fn=collate, num_workers=0)
    assert torch.equal(next(iter(loader)), torch.stack([ds[i] for i in range(4)]))
    with pytest.raises(IndexError):
        ds.__getitems__([len(ds)])


def test_filtered_shards_fall_back_to_h5py(tiny_dataset_copy):
    ref = ShardedDataset(tiny_dataset_copy, split=None, normalize=False)
    expected = [ref.raw(i) for i in range(8)]
    ref.close()
    path = tiny_dataset_copy / "shard-00000.h5"
    with h5py.File(path, "r+", locking=False) as f:
        x = f["fields"][()]
        names = f["fields"].attrs["variables"]
        del f["fields"]
        d = f.create_dataset("fields", data=x, chunks=(1, *x.shape[1:]), compression="gzip")
        d.attrs["variables"] = names
    ds = ShardedDataset(tiny_dataset_copy, split=None, normalize=False)
    assert all(np.array_equal(ds.raw(i), expected[i]) for i in range(8))
    assert ds._shard_handle(0).fd is None  # compressed chunks are not raw bytes: h5py path
    assert ds._shard_handle(1).fd is not None


def test_reader_holds_no_hdf5_handle(tiny_dataset):
    """Other code may open the shards with any HDF5 locking flags while a reader is active."""
    ds = ShardedDataset(tiny_dataset, split=None)
    x = ds[3]
    for flags in ({}, {"locking": False}, {"locking": True}):
        with h5py.File(tiny_dataset / "shard-00000.h5", "r", **flags) as f:
            assert f["fields"].shape[0] == 8
    assert torch.equal(ds[3], x)


def test_user_error_in_a_loader_worker_stays_one_line():
    from torch.utils.data import Dataset

    class Broken(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            raise UserError(f"shard-0.h5: sample {i} has NaN in sit")

    with pytest.raises(UserError) as info:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert str(info.value) == "shard-0.h5: sample 0 has NaN in sit"
