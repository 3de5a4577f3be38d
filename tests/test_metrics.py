"""Splits, benchmark thresholds, confusion matrices, checkpoints and recipes."""

import numpy as np
import pytest
import torch

from fastcifar.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fastcifar.data.splits import stratified_split
from fastcifar.metrics import confusion_matrix, per_class_accuracy, threshold_table
from fastcifar.recipes import RECIPES, TABLE1, get_recipe


def test_stratified_split_is_balanced_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 500)
    np.random.default_rng(0).shuffle(labels)
    train, val = stratified_split(labels, 1000, seed=3)
    assert len(val) == 1000 and len(train) == 4000
    assert np.bincount(labels[val]).tolist() == [100] * 10
    assert not set(train) & set(val) and len(set(train) | set(val)) == 5000
    again_train, again_val = stratified_split(labels, 1000, seed=3)
    np.testing.assert_array_equal(val, again_val)
    assert not np.array_equal(val, stratified_split(labels, 1000, seed=4)[1])


def test_stratified_split_uneven_sizes():
    labels = np.array([0] * 7 + [1] * 3)
    _, val = stratified_split(labels, 5, seed=0)
    assert len(val) == 5 and sorted(np.bincount(labels[val]).tolist()) == [2, 3]
    with pytest.raises(ValueError, match="between 1 and 9"):
        stratified_split(labels, 10, seed=0)


def test_threshold_table_first_crossing_and_training_time():
    accs = [80.0, 86.0, 85.0, 89.5, 91.0, 93.0]
    history = [{"epoch": i + 1, "test_acc": a, "train_seconds_total": 10.0 * (i + 1)}
               for i, a in enumerate(accs)]
    table = {row["threshold"]: (row["epoch"], row["train_seconds"])
             for row in threshold_table(history)}
    assert table == {86.0: (2, 20.0), 88.0: (4, 40.0), 90.0: (5, 50.0), 92.0: (6, 60.0),
                     94.0: (None, None)}


def test_confusion_matrix_and_per_class():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(preds, labels, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    np.testing.assert_allclose(per_class_accuracy(cm), [50.0, 100.0, 50.0])


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    state = {"model": {"w": torch.randn(3)}, "epoch": 2, "history": [{"a": 1.5, "b": None}]}
    save_checkpoint(state, tmp_path / "x.pt")
    back = load_checkpoint(tmp_path / "x.pt")
    torch.testing.assert_close(back["model"]["w"], state["model"]["w"])
    assert back["history"] == state["history"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr("fastcifar.checkpoint.torch.save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt is truncated or corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_table1_recipes_follow_the_report():
    assert TABLE1 == ["row1_cnn", "row2_cnn_aug_plateau", "row3_resnet_hybrid",
                      "row4_resnet_avgpool", "row5_resnet_maxpool", "row6_resnet_final"]
    for i, name in enumerate(TABLE1):
        r = get_recipe(name)
        assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.epochs) == (
            0.01, 0.9, 1e-6, 100, 100)
        assert not r.nesterov and r.label_smoothing == 0
        if i == 0:
            assert r.scheduler == "none" and r.augment == "none"
        else:
            assert r.scheduler == "plateau"
            assert (r.plateau_factor, r.plateau_patience, r.plateau_min_lr) == (0.1, 10, 1e-6)
    assert [get_recipe(n).augment for n in TABLE1[1:]] == [
        "flip_affine", *["flip_affine_crop_jitter"] * 3, "flip_affine_resized_crop"]
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("row7")
    with pytest.raises(ValueError, match="unknown recipe fields"):
        RECIPES["row1_cnn"].replace(learning_rate=1.0)
