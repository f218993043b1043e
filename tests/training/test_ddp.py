import pytest
import torch

from otalign.training.ddp import DistInfo, resolve_device, shard, unwrap


def test_shards_partition_each_global_batch():
    permutation = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    world, batch = 3, 12
    per_rank = [shard(permutation, DistInfo(rank, world), batch) for rank in range(world)]
    assert all(len(batches) == 50 // batch for batches in per_rank)
    for step in range(50 // batch):
        together = torch.cat([per_rank[rank][step] for rank in range(world)])
        assert torch.equal(together, permutation[step * batch:(step + 1) * batch])
        assert all(per_rank[rank][step].numel() == batch // world for rank in range(world))


def test_single_process_shard_is_the_plain_batching():
    permutation = torch.arange(10)
    assert [b.tolist() for b in shard(permutation, DistInfo(), 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_batch_must_split_evenly():
    with pytest.raises(ValueError, match="batch_size"):
        shard(torch.arange(10), DistInfo(0, 3), 4)


def test_resolve_device_and_unwrap():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu-ish")
    module = torch.nn.Linear(2, 2)
    assert unwrap(module) is module
