"""Data-parallel training with 2 real processes (gloo on 127.0.0.1, started by
:func:`robustlabel.engine.distributed.launch_local`) against one process over the same global batch.

Exact by construction: no dropout, no random augmentation (``augment=False``, crops the size of
the 32³ volumes), BatchNorm frozen in eval mode (``freeze_batchnorm=True``; SyncBatchNorm needs
CUDA), union mode (every item weighs the same) and a global batch of all 4 items, so each step
sees the same 4 crops whatever the rank count.  ``batch_size`` is per rank: 4 in one process,
2 per rank with 2 ranks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustlabel.data.studies import studies_datalist
from robustlabel.engine.distributed import init_distributed, launch_local
from robustlabel.engine.trainer import train
from robustlabel.networks import TINY_TRANSBTS

from engine_helpers import tiny_config

EPOCHS = 4
NO_DROPOUT = {**TINY_TRANSBTS, "dropout_rate": 0.0, "attn_dropout_rate": 0.0, "init_dropout_rate": 0.0}


def exact_config(batch_size: int, **changes):
    return tiny_config(network=NO_DROPOUT, augment=False, freeze_batchnorm=True, batch_size=batch_size,
                       epochs=EPOCHS, val_interval=EPOCHS, pseudo_loss="gce", pseudo_params={"q": 0.7}, **changes)


def _worker(spec_path: str) -> None:
    """One rank: run every job of the spec in order; write this rank's histories."""
    ctx = init_distributed("cpu")
    spec = json.loads(Path(spec_path).read_text())
    out = []
    for job in spec["jobs"]:
        from robustlabel.engine.config import TrainConfig

        config = TrainConfig.from_dict(job["config"])
        run = train(job["items"], job["val"], job["out"], config, resume=job["resume"], progress=False)
        out.append({"history": run.history, "start_epoch": run.start_epoch})
    Path(spec["result"].format(rank=ctx.rank)).write_text(json.dumps(out))


@pytest.fixture(scope="module")
def datalists(studies_template):
    final = studies_datalist(studies_template, sources=("final",))
    items = final + [{**final[0], "source": "pseudo", "case": "pseudo_copy"}]
    return items, final


@pytest.fixture(scope="module")
def balanced_items(studies_template):
    """2 clinician + 2 pseudo items: mode per_source draws 2 (clinician, pseudo) pairs per epoch."""
    final = studies_datalist(studies_template, sources=("final",))
    return final[:2] + [{**final[2], "source": "pseudo", "case": "p2"}, {**final[0], "source": "pseudo", "case": "p0"}]


@pytest.fixture(scope="module")
def one_process_balanced(balanced_items, tmp_path_factory):
    """Reference of mode per_source: one process, batch 4 = both pairs, one step per epoch."""
    out = tmp_path_factory.mktemp("one_balanced")
    return train(balanced_items, [], out / "run", exact_config(4, mode="per_source"), progress=False)


@pytest.fixture(scope="module")
def one_process(datalists, tmp_path_factory):
    """Reference: one process, batch 4 (= the whole datalist, one step per epoch)."""
    items, val = datalists
    out = tmp_path_factory.mktemp("one")
    return train(items, val, out / "run", exact_config(4), progress=False)


@pytest.fixture(scope="module")
def two_ranks(datalists, balanced_items, one_process, tmp_path_factory):
    """Two ranks with batch 2 each: a fresh run, the resume of a 1-process run stopped after
    epoch 2, and a per_source run (same processes, to pay the start-up once)."""
    items, val = datalists
    tmp = tmp_path_factory.mktemp("two")
    stopped = tmp / "resumed"
    epochs_done: list[dict] = []
    train(items, val, stopped, exact_config(4), progress=False, on_epoch=epochs_done.append,
          stop=lambda: len(epochs_done) >= 2)
    assert [e["epoch"] for e in epochs_done] == [1, 2]
    spec = {
        "jobs": [
            {"items": items, "val": val, "out": str(tmp / "fresh"), "config": exact_config(2).to_dict(), "resume": False},
            {"items": items, "val": val, "out": str(stopped), "config": exact_config(2).to_dict(), "resume": True},
            {"items": balanced_items, "val": [], "out": str(tmp / "balanced"),
             "config": exact_config(2, mode="per_source").to_dict(), "resume": False},
        ],
        "result": str(tmp / "rank{rank}.json"),
    }
    (tmp / "spec.json").write_text(json.dumps(spec))
    launch_local(_worker, 2, (str(tmp / "spec.json"),), env={"OMP_NUM_THREADS": "1"})
    return tmp, [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def test_two_ranks_give_the_losses_of_one_process_over_the_same_global_batch(one_process, two_ranks):
    _, (rank0, rank1) = two_ranks
    reference = one_process.history
    assert [h["iterations"] for h in reference] == [1] * EPOCHS  # ≤ 5 optimiser steps in all
    fresh = rank0[0]["history"]
    assert [h["epoch"] for h in fresh] == list(range(1, EPOCHS + 1))
    assert [h["iterations"] for h in fresh] == [1] * EPOCHS  # 2 crops per rank, one step per epoch
    for ours, ref in zip(fresh, reference):
        assert _close(ours["loss"], ref["loss"]), (ours["loss"], ref["loss"])
    # the losses change from step to step: the comparison covers the synchronised updates
    assert len({round(h["loss"], 6) for h in reference}) == EPOCHS
    # validation Dice, reduced over the ranks' disjoint shards of the 3 validation cases
    assert _close(fresh[-1]["val_mean_dice"], reference[-1]["val_mean_dice"])
    # every rank reports the same (reduced) history
    assert rank1[0]["history"] == [{**h, "time_s": r["time_s"]} for h, r in zip(fresh, rank1[0]["history"])]


def test_only_rank_0_writes_and_a_run_resumes_on_another_number_of_ranks(one_process, two_ranks):
    tmp, (rank0, _) = two_ranks
    fresh = tmp / "fresh"
    assert sorted(p.name for p in fresh.iterdir()) == ["best.pt", "history.jsonl", "last.pt", "tensorboard"]
    assert len(list((fresh / "tensorboard").glob("events.*"))) == 1  # one writer: rank 0
    assert len((fresh / "history.jsonl").read_text().splitlines()) == EPOCHS
    assert not list(fresh.glob(".*"))
    # 1 process stopped after epoch 2, resumed with 2 ranks: the history continues the reference
    resumed = rank0[1]
    assert resumed["start_epoch"] == 2
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, EPOCHS + 1))
    for ours, ref in zip(resumed["history"], one_process.history):
        assert _close(ours["loss"], ref["loss"]), (ours["epoch"], ours["loss"], ref["loss"])


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_balanced_sampler_shards_whole_pairs_over_ranks(ranks):
    """mode per_source under DDP: every rank draws whole (clinician, pseudo) pairs, the same number
    of them, and together the ranks cover every pair of the epoch (padded by repeating the first)."""
    from robustlabel.engine.sampler import DistributedSourceBalancedSampler, SourceBalancedSampler

    flags = [False] * 3 + [True] * 7
    base = SourceBalancedSampler(flags, seed=5)
    samplers = [DistributedSourceBalancedSampler(SourceBalancedSampler(flags, seed=5), ranks, r) for r in range(ranks)]
    for epoch in (1, 2):
        base.set_epoch(epoch)
        for s in samplers:
            s.set_epoch(epoch)
        drawn = [list(s) for s in samplers]
        assert {len(d) for d in drawn} == {len(samplers[0])} and len(samplers[0]) == 2 * -(-7 // ranks)
        pairs = [list(zip(d[0::2], d[1::2])) for d in drawn]
        for rank_pairs in pairs:
            assert all(not flags[c] and flags[p] for c, p in rank_pairs)  # every pair: clinician then pseudo
        together = [pair for rank_pairs in pairs for pair in rank_pairs]
        assert set(together) == set(base.pairs()) and len(together) - len(base.pairs()) < ranks
    if ranks == 1:
        assert list(samplers[0]) == list(base)  # one rank: exactly the single-process sampler


def test_shard_splits_a_pool_into_disjoint_covering_parts():
    from robustlabel.engine.distributed import DistContext, shard

    for n in (0, 1, 2, 5, 16):
        for world in (1, 2, 3):
            parts = [shard(list(range(n)), DistContext(rank=r, world_size=world, backend="gloo")) for r in range(world)]
            assert sorted(i for p in parts for i in p) == list(range(n))


def test_balanced_per_source_batches_under_ddp_give_the_single_process_losses(one_process_balanced, two_ranks):
    """mode per_source: each rank takes one whole (clinician, pseudo) pair per step, so the two
    ranks' per-source means average to the single process' over both pairs."""
    _, (rank0, _) = two_ranks
    ours, reference = rank0[2]["history"], one_process_balanced.history
    assert [h["iterations"] for h in ours] == [1] * EPOCHS and [h["iterations"] for h in reference] == [1] * EPOCHS
    for a, b in zip(ours, reference):
        assert _close(a["loss"], b["loss"]), (a["epoch"], a["loss"], b["loss"])
