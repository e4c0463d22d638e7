"""End-to-end runs of the PASCAL experiments (Ju 2017 Table 2 / Fig. 6, Tables 3-5 / Fig. 7) in a
test-size version of ``--quick``: synthetic VOC2011 + SBD trees (one image per class and split),
a 1/8-width FCN-AlexNet, a handful of single-image iterations, one torch thread; and the scripts'
options turned into the experiments' configs."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))  # the devkit writer of tests/data/test_voc.py
from voc_layouts import object_maps, write_voc_tree  # noqa: E402

from robustlabel.experiments import ju_voc_segmentation as seg
from robustlabel.experiments import ju_voc_transfer as transfer
from robustlabel.experiments import voc_cli
from robustlabel.experiments.voc_data import RunOptions, VocData

PNG = b"\x89PNG\r\n\x1a\n"
TINY_DATA = VocData(synthetic=True, synthetic_per_class=(1, 1))
QUICK_RUN = RunOptions(quick=True, threads=1, progress=False)
SEG_CONFIG = seg.VocPUConfig(**{**seg.QUICK, "iter_size": 1, "iterations": 4, "snapshot_every": 1, "repeats": 2})
TRANSFER_CONFIG = transfer.VocTransferConfig(**{
    **transfer.QUICK, "iter_size": 1, "folds": (1, 3), "pretrain_iterations": 2, "pretrain_snapshot_every": 2,
    "finetune_iterations": 5, "finetune_snapshot_every": 1})


@pytest.fixture(autouse=True)
def restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def _cells(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as fh:
        return {(r["row"], r["column"]): r for r in csv.DictReader(fh)}


def _drop_run(out: Path, key: str) -> None:
    stored = json.loads((out / "runs.json").read_text())
    del stored["runs"][key]
    (out / "runs.json").write_text(json.dumps(stored))


def test_table2_quick_mode_writes_every_row_and_resumes(tmp_path, capsys):
    out = tmp_path / "table2"
    seg.run(TINY_DATA, out, SEG_CONFIG, QUICK_RUN)
    assert "runs trained: 8, skipped (finished earlier): 0" in capsys.readouterr().out
    markdown = (out / "table2.md").read_text()
    assert "QUICK" in markdown and "SYNTHETIC" in markdown and "Ran on:" in markdown
    cells = _cells(out / "table2.csv")
    assert set(cells) == {(row.name, col) for row in seg.ROWS for col in seg.COLUMNS}
    for (row, col), cell in cells.items():
        assert cell["n"] == "2" and 0.0 <= float(cell["mean"]) <= 1.0, (row, col)
        assert float(cell["paper"]) == seg.PAPER_TABLE2[row][list(seg.COLUMNS).index(col)]
    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert set(runs) == {f"r{r}/{row.key}" for r in range(2) for row in seg.ROWS}
    for record in runs.values():  # the reported snapshot is the best mean IU of the last five (of four here)
        assert [h["iteration"] for h in record["history"]] == [1, 2, 3, 4]
        assert record["best"]["mean_iu"] == max(h["mean_iu"] for h in record["history"])
    weighted = runs["r0/unseg_weighted"]
    assert weighted["weights_source"] == "auto" and weighted["weights"][1] > weighted["weights"][0]
    # half of the objects unsegmented: less foreground than with complete labels
    assert runs["r0/unseg_logistic"]["foreground_fraction"] < runs["r0/complete_logistic"]["foreground_fraction"]
    for png in ("table2.png", "fig6.png"):
        assert (out / png).read_bytes()[:8] == PNG

    table = (out / "table2.csv").read_text()
    seg.run(TINY_DATA, out, SEG_CONFIG, QUICK_RUN)
    assert "runs trained: 0, skipped (finished earlier): 8" in capsys.readouterr().out
    assert (out / "table2.csv").read_text() == table
    _drop_run(out, "r1/unseg_sigmoid")
    seg.run(TINY_DATA, out, SEG_CONFIG, QUICK_RUN)
    assert "runs trained: 1, skipped (finished earlier): 7" in capsys.readouterr().out


def test_table2_on_the_devkit_layout_lists_the_corrupt_png(tmp_path, capsys):
    tree = write_voc_tree(tmp_path / "data")
    out = tmp_path / "out"
    seg.run(VocData(voc=tree.root, sbd=tree.sbd, subsample=1), out,
            seg.VocPUConfig(width=0.0625, iterations=2, snapshot_every=1, repeats=1, iter_size=1, lr=1e-3),
            RunOptions(threads=1, progress=False))
    markdown = (out / "table2.md").read_text()
    assert "skipped unreadable files (1)" in markdown and "2011_000005.png" in markdown
    assert "train 5 (VOC 3 of 5, SBD 2 of 3)" in markdown and "SBD images in VOC val excluded: 1" in markdown
    assert "full" in markdown and "QUICK" not in markdown
    with pytest.raises(FileNotFoundError, match="nowhere"):
        seg.run(VocData(voc=tmp_path / "nowhere"), out, options=RunOptions(progress=False))


def test_transfer_quick_mode_writes_every_table_row_and_resumes(tmp_path, capsys):
    out = tmp_path / "transfer"
    transfer.run(TINY_DATA, out, TRANSFER_CONFIG, QUICK_RUN)
    assert "fine-tuning runs trained: 24, skipped (finished earlier): 0" in capsys.readouterr().out
    for table in transfer.TABLES:
        markdown = (out / f"{table.stem}.md").read_text()
        assert "QUICK" in markdown and (out / f"{table.stem}.png").read_bytes()[:8] == PNG
        cells = _cells(out / f"{table.stem}.csv")
        for name, key in table.rows:
            for fold in (1, 3):
                cell = cells[(name, f"Fold{fold}")]
                if transfer.unavailable(key, fold):
                    assert cell["n"] == "0" and cell["mean"] == "", (table.stem, name, fold)
                else:
                    assert cell["n"] == "5" and 0.0 <= float(cell["mean"]) <= 1.0, (table.stem, name, fold)
            assert cells[(name, "Fold2")]["n"] == "0" and cells[(name, "Fold2")]["paper"]  # not run, thesis beside
            assert float(cells[(name, transfer.AVERAGE)]["paper"]) == table.paper[name][4][0]
    assert "dog, the only target category, is one of fold 3's fine-tuning classes" in (out / "table5.md").read_text()
    fig7 = _cells(out / "fig7.csv")
    assert {row for row, _ in fig7} >= {"RC4", "RC7", "RC11"} and (out / "fig7.png").read_bytes()[:8] == PNG

    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert len([k for k in runs if "/ft/" in k]) == 24 and len([k for k in runs if "/pre/" in k]) == 22
    classes = {k.split("/")[1] + "/" + k.split("/")[3]: v["n_classes"] for k, v in runs.items() if "/pre/" in k}
    assert classes["f1/true"] == 16 and classes["f1/binary"] == 2 and classes["f1/no_fp"] == 2
    assert classes["f1/super"] == 5 and classes["f3/super"] == 4  # fold 3 has no person: three super-categories
    assert (classes["f1/rc4"], classes["f1/rc7"], classes["f1/rc11"]) == (5, 8, 12)
    assert runs["r0/f3/pre/half_unseg"]["n_train"] == 15 and runs["r0/f3/ft/random"]["n_test"] == 5
    ft = runs["r0/f1/ft/true"]
    assert len(ft["last_five_mean_iu"]) == 5 and ft["last_five_iterations"] == [1, 2, 3, 4, 5]
    assert not (out / "models").exists()  # --quick keeps pre-trained weights in memory

    tables = {t.stem: (out / f"{t.stem}.csv").read_text() for t in transfer.TABLES}
    transfer.run(TINY_DATA, out, TRANSFER_CONFIG, QUICK_RUN)
    assert "fine-tuning runs trained: 0, skipped (finished earlier): 24" in capsys.readouterr().out
    assert {t.stem: (out / f"{t.stem}.csv").read_text() for t in transfer.TABLES} == tables
    _drop_run(out, "r0/f3/ft/binary")
    transfer.run(TINY_DATA, out, TRANSFER_CONFIG, QUICK_RUN)
    assert "fine-tuning runs trained: 1, skipped (finished earlier): 23" in capsys.readouterr().out


def test_pretraining_labels_follow_each_variant():
    from robustlabel.data.voc import VocSample, pretraining_classes

    classes = pretraining_classes(1)
    samples = []
    for k, c in enumerate(classes * 4):
        cls, inst = object_maps([(2, 8, 2 + k % 5, 10 + k % 5, c)])
        samples.append(VocSample(f"s{k}", "voc", np.zeros((*cls.shape, 3), np.uint8), cls, inst, c))
    true, n, _ = transfer.pretraining_labels(transfer.PRETRAININGS["true"], samples, 1, seed=0)
    assert n == 16 and [int(m[inst == 1].max()) for m, inst in zip(true, [s.instance_map for s in samples])] == \
        [classes.index(s.object_class) + 1 for s in samples]
    fg = [int(np.isin(m, range(1, 255)).any()) for m in
          transfer.pretraining_labels(transfer.PRETRAININGS["half_unseg"], samples, 1, seed=0)[0]]
    assert 0 < sum(fg) < len(samples)
    no_fp, n, _ = transfer.pretraining_labels(transfer.PRETRAININGS["no_fp"], samples, 1, seed=0)
    dog = [s.object_class == transfer.DOG for s in samples]
    assert n == 2 and [bool((m == 1).any()) for m in no_fp] == dog
    again = transfer.pretraining_labels(transfer.PRETRAININGS["all_random"], samples, 1, seed=0)[0]
    assert all(np.array_equal(a, b) for a, b in
               zip(again, transfer.pretraining_labels(transfer.PRETRAININGS["all_random"], samples, 1, seed=0)[0]))
    assert all(not np.array_equal(a, t) for a, t in zip(again, true))  # every class replaced


def test_script_options_win_over_quick_settings_which_win_over_thesis_defaults():
    parser = voc_cli.add_segmentation_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--quick", "--synthetic", "--out", "x", "--iterations", "4", "--class-weights", "0.5,2"])
    data, config = voc_cli.data_and_config(args, seg.VocPUConfig, seg.QUICK)
    assert data == VocData(synthetic=True) and data.synthetic_per_class == (4, 2)
    assert config == seg.VocPUConfig(**{**seg.QUICK, "iterations": 4, "class_weights": (0.5, 2.0)})
    assert config.snapshot_every == 50 and config.width == 0.125 and config.repeats == 2
    assert voc_cli.run_options(args) == RunOptions(quick=True, threads=1)
    args = parser.parse_args(["--voc", "v", "--out", "x", "--no-progress", "--synthetic-per-class", "3", "1"])
    data, config = voc_cli.data_and_config(args, seg.VocPUConfig, seg.QUICK)
    assert config == seg.VocPUConfig() and (config.iterations, config.iter_size, config.repeats) == (240_000, 20, 3)
    assert data.voc == Path("v") and data.synthetic_per_class == (3, 1)
    assert voc_cli.run_options(args) == RunOptions(progress=False)

    parser = voc_cli.add_transfer_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--quick", "--synthetic", "--out", "x", "--folds", "3", "1", "3", "--threads", "2"])
    _, config = voc_cli.data_and_config(args, transfer.VocTransferConfig, transfer.QUICK)
    assert config.folds == (1, 3) and config.finetune_iterations == 60 and voc_cli.run_options(args).threads == 2
    assert transfer.VocTransferConfig().folds == (1, 2, 3, 4)


@pytest.mark.parametrize("argv,message", [
    ([], "give exactly one of --voc PATH"),
    (["--voc", "v", "--synthetic"], "give exactly one of --voc PATH"),
    (["--synthetic", "--sbd", "s"], "--sbd goes with --voc"),
    (["--voc", "v", "--alexnet-weights", "w.pth", "--width", "0.5"], "--alexnet-weights needs --width 1"),
    (["--voc", "v", "--unsegmented-p", "1.5"], r"unsegmented_p must lie in \[0, 1\], got 1.5"),
    (["--voc", "v", "--iterations", "0"], "iterations, snapshot_every and iter_size must be >= 1"),
])
def test_inconsistent_options_stop_the_script_naming_them(argv, message):
    args = voc_cli.add_segmentation_arguments(argparse.ArgumentParser()).parse_args([*argv, "--out", "x"])
    with pytest.raises(SystemExit, match="error: " + message):
        voc_cli.data_and_config(args, seg.VocPUConfig, seg.QUICK)


def test_full_mode_writes_the_pretrained_weights_once_and_reuses_them(tmp_path):
    from robustlabel.experiments.store import ResultsStore
    from robustlabel.experiments.voc_data import prepare_data

    selection, _ = prepare_data(TINY_DATA, tmp_path, progress=False)
    config = dataclasses.replace(TRANSFER_CONFIG, pretrain_iterations=1, pretrain_snapshot_every=1)
    store = ResultsStore(tmp_path / "runs.json", {"test": 1})
    first = transfer.TransferExperiment(config, selection, store, tmp_path, quick=False)
    weights = first.pretrained(0, 1, "binary", progress=lambda n: None)
    saved = tmp_path / "models" / "r0_f1_binary.pt"
    assert saved.is_file() and "r0/f1/pre/binary" in store and not list((tmp_path / "models").glob(".*.tmp"))
    calls = []
    again = transfer.TransferExperiment(config, selection, ResultsStore(tmp_path / "runs.json", {"test": 1}), tmp_path)
    loaded = again.pretrained(0, 1, "binary", progress=calls.append)
    assert not calls and loaded.keys() == weights.keys()  # read back from models/, not trained again
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
