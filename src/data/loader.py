"""Batches straight from in-memory tensors.

A ``DataLoader`` over a ``TensorDataset`` indexes one sample at a time and collates: for
28x28 images that costs more than the model's step on a CPU. ``TensorBatchLoader`` gathers a
whole batch with one indexing op from a shuffled permutation, which is what ``DataLoader(shuffle=True,
drop_last=...)`` plus a ``DistributedSampler`` would produce, minus the per-sample work.

With ``sample_rate`` set (differentially private training, ``privacy=dp``) the batches are Poisson
samples instead: each example joins each batch independently with probability ``sample_rate``, so
batch sizes vary (an empty batch is possible) and an epoch is ``len(self)`` such draws. That is the
sampling the privacy accountant's subsampled-Gaussian analysis assumes (Opacus' ``DPDataLoader``
does the same for a ``DataLoader``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor


class TensorBatchLoader:
    """Iterates ``tuple(t[idx] for t in tensors)`` over index batches.

    Args:
        tensors: equal-length tensors (images, labels, ...), on any device.
        batch_size: samples per batch on this rank.
        shuffle: draw a new permutation every epoch, seeded by ``seed + epoch`` so that a resumed
            run sees the same order and every rank agrees on it.
        drop_last: drop the last incomplete batch (and make every rank yield the same number of
            batches, as DDP training requires).
        rank, world_size: this process's shard: rank ``r`` takes positions ``r, r + W, ...`` of
            the permutation, so shards are disjoint and cover the data.
        epoch_fn: returns the current epoch (the trainer's), read at the start of each pass.
        sample_rate: Poisson sampling at this rate instead of a permutation (one process only);
            ``len(self)`` batches per epoch, drawn from a generator seeded by ``seed + epoch``.
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_fn: Callable[[], int] | None = None,
        sample_rate: float | None = None,
    ) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatchLoader needs equal-length tensors")
        self.tensors = tuple(tensors)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch_fn = epoch_fn or (lambda: 0)
        if sample_rate is not None and (world_size != 1 or not 0 < sample_rate <= 1):
            raise ValueError("Poisson sampling needs one process and a rate in (0, 1]")
        self.sample_rate = sample_rate

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = len(self.tensors[0])
        if self.drop_last:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def _indices(self) -> Tensor:
        n = len(self.tensors[0])
        device = self.tensors[0].device
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + int(self.epoch_fn()))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        stop = (n // self.world_size) * self.world_size if self.drop_last else n
        return order[self.rank : stop : self.world_size].to(device)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        if self.sample_rate is not None:
            yield from self._poisson_batches()
            return
        indices = self._indices()
        for start in range(0, len(indices), self.batch_size):
            idx = indices[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                return
            yield tuple(t[idx] for t in self.tensors)

    def _poisson_batches(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        device = self.tensors[0].device
        generator = torch.Generator().manual_seed(self.seed + int(self.epoch_fn()))
        for _ in range(len(self)):
            idx = torch.nonzero(torch.rand(n, generator=generator) < self.sample_rate).flatten()
            yield tuple(t[idx.to(device)] for t in self.tensors)
