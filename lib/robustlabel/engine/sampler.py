"""A sampler that gives every training batch as many clinician as pseudo-labelled samples.

``mode="per_source"`` (:class:`~robustlabel.losses.SourceAwareLoss`) follows the seed's
``train_2losses.py``: every step pairs labelled and pseudo-labelled samples and adds the two
per-source mean losses.  Neither MONAI nor torch has a sampler that fixes the composition of a
batch (torch's ``WeightedRandomSampler`` balances only in expectation, with replacement; MONAI's
samplers shard or weight datasets, they do not pair them), hence :class:`SourceBalancedSampler`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class SourceBalancedSampler(Sampler[int]):
    r"""Dataset indices in ``(clinician, pseudo)`` pairs, so a batch of even size ``B`` holds
    ``B/2`` samples of each source.

    Per epoch ``e`` (:meth:`set_epoch`) with ``F`` clinician and ``P`` pseudo indices: the larger
    source is permuted once, the smaller one is repeated in fresh permutations until it is as
    long (``train_2losses.py`` draws a labelled sample per step likewise), and the two are zipped
    into ``max(|F|, |P|)`` pairs, flattened ``f_0, p_0, f_1, p_1, …``.  The permutations come
    from ``numpy.random.default_rng([seed, e])``: the order depends only on ``seed`` and the
    epoch, so a resumed run sees the same batches, and a wrapper that shards :meth:`pairs` (not
    single indices, which would split the pairs) across ranks gives each rank balanced batches.
    When one source is empty the sampler is a seeded permutation of all indices.

    Args:
        is_pseudo: per dataset index, ``True`` for a pseudo-labelled sample.
        seed: seed of the permutations.

    Raises:
        ValueError: for an empty dataset.
    """

    def __init__(self, is_pseudo: Sequence[bool], seed: int = 0) -> None:
        flags = np.asarray([bool(f) for f in is_pseudo], dtype=bool)
        if flags.size == 0:
            raise ValueError("SourceBalancedSampler needs at least one sample")
        self.clinician = np.flatnonzero(~flags)
        self.pseudo = np.flatnonzero(flags)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def balanced(self) -> bool:
        """Whether both sources are present (otherwise a plain permutation is drawn)."""
        return self.clinician.size > 0 and self.pseudo.size > 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutations of ``epoch`` (call it at the start of every epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if not self.balanced:
            return int(self.clinician.size + self.pseudo.size)
        return 2 * int(max(self.clinician.size, self.pseudo.size))

    def pairs(self) -> list[tuple[int, int]]:
        """This epoch's ``(clinician index, pseudo index)`` pairs (empty when unbalanced)."""
        if not self.balanced:
            return []
        rng = np.random.default_rng([self.seed, self.epoch])
        n = int(max(self.clinician.size, self.pseudo.size))

        def stretched(indices: np.ndarray) -> np.ndarray:
            repeats = -(-n // indices.size)
            return np.concatenate([rng.permutation(indices) for _ in range(repeats)])[:n]

        clinician, pseudo = stretched(self.clinician), stretched(self.pseudo)
        return [(int(c), int(p)) for c, p in zip(clinician, pseudo)]

    def __iter__(self) -> Iterator[int]:
        if not self.balanced:
            rng = np.random.default_rng([self.seed, self.epoch])
            everything = np.concatenate([self.clinician, self.pseudo])
            return iter(int(i) for i in rng.permutation(everything))
        return iter([i for pair in self.pairs() for i in pair])


class DistributedSourceBalancedSampler(Sampler[int]):
    r"""This rank's share of a :class:`SourceBalancedSampler`: whole ``(clinician, pseudo)`` pairs,
    so every rank's batches stay 1:1 under ``torch.distributed``.

    The epoch's ``P`` pairs (the same on every rank: they depend on ``seed`` and the epoch only)
    are padded to ``N·⌈P/N⌉`` by repeating the first pairs, as torch's ``DistributedSampler``
    pads indices (every rank must take the same number of steps), and rank ``r`` takes pairs
    ``r, r + N, …``.  With one rank it yields exactly what :class:`SourceBalancedSampler` yields.

    Args:
        base: the balanced sampler of the whole datalist (both sources present).
        num_replicas: ranks ``N``.
        rank: this rank ``r``.

    Raises:
        ValueError: ``base`` is not balanced, or ``rank`` outside ``[0, N)``.
    """

    def __init__(self, base: SourceBalancedSampler, num_replicas: int, rank: int) -> None:
        if not base.balanced:
            raise ValueError("DistributedSourceBalancedSampler needs both label sources")
        if not 0 <= int(rank) < int(num_replicas):
            raise ValueError(f"rank must lie in [0, {num_replicas}), got {rank}")
        self.base = base
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)

    def set_epoch(self, epoch: int) -> None:
        """Use the pairs of ``epoch`` (call it at the start of every epoch, on every rank)."""
        self.base.set_epoch(epoch)

    def _pairs_per_rank(self) -> int:
        return math.ceil(max(self.base.clinician.size, self.base.pseudo.size) / self.num_replicas)

    def __len__(self) -> int:
        return 2 * self._pairs_per_rank()

    def __iter__(self) -> Iterator[int]:
        pairs = self.base.pairs()
        total = self._pairs_per_rank() * self.num_replicas
        padded = (pairs * math.ceil(total / len(pairs)))[:total]
        return iter([i for pair in padded[self.rank :: self.num_replicas] for i in pair])
