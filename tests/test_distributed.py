"""torchrun + DDP on the CPU (gloo, 2 ranks) and the sweep, on small synthetic data.

The runs are tiny (80 training images, batch 40, 2 epochs of the cnn); most of their time is
two Python processes importing torch.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from fastcifar import sweep, train
from fastcifar.augment import get_preset, make_loader
from fastcifar.checkpoint import load_checkpoint
from fastcifar.data.synthetic import make_arrays

# row 2 has augmentation (flip + affine): the ranks' draws must match the one-process draws too
RUN = ["--recipe", "row2_cnn_aug_plateau", "--batch-size", "40", "--lr", "0.01", "--seed", "3",
       "--train-subset", "80", "--test-subset", "100", "--device", "cpu", "--no-figures",
       "--quiet", "--amp", "off", "--channels-last", "off"]  # fp32 NCHW: the tolerances below
# Tolerance of the 2-rank --sync-bn run against the 1-process run, as ||w2 - w1|| / ||w1|| over
# all weight tensors. The math is the same (each rank's loss is a mean over 20 images, DDP
# averages the gradients: the gradient of the mean over the global 40; BatchNorm statistics
# over the 40; the same momentum SGD), so only float rounding differs. It is not 1e-6 because
# the one-process reference is eager fp32 BatchNorm on the CPU, whose first-layer gradients
# differ from an fp64 computation by about 0.5 % on this data (the all-reduce BatchNorm's by
# 1e-7), and momentum steps carry that on. Measured after 4 steps at lr 0.01: 9e-5 with
# --sync-bn, 2.5e-3 with per-rank BatchNorm (which the last DDP test checks is further away).
SYNC_BN_RTOL = 1e-3


def rank_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env | {k: str(v) for k, v in extra.items()}


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "fastcifar.train", *args]
    return subprocess.run(cmd, env=rank_env(), capture_output=True, text=True, timeout=300)


def weights(run_dir) -> dict:
    model = load_checkpoint(run_dir / "last.pt")["model"]
    return {k: v for k, v in model.items() if k.endswith("weight")}


def relative_distance(a: dict, b: dict) -> float:
    diff = sum(((a[k] - b[k]) ** 2).sum() for k in a)
    return float((diff / sum((a[k] ** 2).sum() for k in a)).sqrt())


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """A 1-process run and a 2-rank --sync-bn run of the same recipe, seed and global batch."""
    root = tmp_path_factory.mktemp("runs")
    flags = ["--data-dir", str(data_dir), *RUN, "--epochs", "2"]
    assert train.main([*flags, "--out", str(root / "one")]) == 0
    done = torchrun([*flags, "--out", str(root / "two"), "--sync-bn"])
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_two_ranks_with_sync_bn_match_one_process(runs):
    one, two = runs / "one", runs / "two"
    distance = relative_distance(weights(one), weights(two))
    assert distance < SYNC_BN_RTOL, distance
    h1 = load_checkpoint(one / "last.pt")["history"]
    h2 = load_checkpoint(two / "last.pt")["history"]
    assert [h["epoch"] for h in h2] == [1, 2]
    for a, b in zip(h1, h2):  # metrics summed over the ranks: the one-process numbers
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-3)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=2e-3)
    config = json.loads((two / "config.json").read_text())
    assert config["distributed"] == {"world_size": 2, "sync_bn": True, "backend": "gloo"}
    # checkpoints hold the unwrapped module: no DDP "module." prefix
    assert not any(k.startswith("module.") for k in load_checkpoint(two / "last.pt")["model"])


def test_two_rank_checkpoint_resumes_in_one_process(runs, data_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(runs / "one", one)
    shutil.copytree(runs / "two", two)
    resume = ["--epochs", "3", "--quiet", "--data-dir", str(data_dir), "--device", "cpu",
              "--no-figures"]
    assert train.main(["--resume", str(two), *resume]) == 0
    assert train.main(["--resume", str(one), *resume]) == 0
    assert [h["epoch"] for h in load_checkpoint(two / "last.pt")["history"]] == [1, 2, 3]
    # epoch 3 sees the same data in one process as it would have on two ranks, so the resumed
    # run stays next to the one-process run (a little looser: 4 more steps of rounding noise)
    distance = relative_distance(weights(one), weights(two))
    assert distance < 2 * SYNC_BN_RTOL, distance


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_per_rank_bn_only_rank0_writes_and_prints(runs, data_dir, tmp_path):
    """The two ranks started by hand, as torchrun would, each with its own --out: rank 1 must
    neither print nor create its folder. Default (per-rank) BatchNorm is not the one-process
    computation: further from it than the --sync-bn run."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = rank_env(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=port)
        cmd = [sys.executable, "-m", "fastcifar.train", "--data-dir", str(data_dir), *RUN,
               "--epochs", "2", "--out", str(tmp_path / f"rank{rank}")]
        cmd.remove("--quiet")  # rank 0 prints its epoch lines; rank 1 must stay silent anyway
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    (out0, err0), (out1, err1) = (p.communicate(timeout=300) for p in procs)
    assert [p.returncode for p in procs] == [0, 0], err0[-2000:] + err1[-2000:]
    assert "epoch   2/2" in out0 and "final test accuracy" in out0
    assert out1 == "" and "epoch" not in err1  # no epoch lines, no progress bars
    assert not (tmp_path / "rank1").exists()
    assert sorted(p.name for p in (tmp_path / "rank0").iterdir()) == [
        "best.pt", "config.json", "last.pt", "metrics.jsonl", "summary.json"]
    one = weights(runs / "one")
    per_rank = relative_distance(one, weights(tmp_path / "rank0"))
    synced = relative_distance(one, weights(runs / "two"))
    assert per_rank > 5 * synced, (per_rank, synced)


@pytest.mark.parametrize("backend", ["torch", "dali"])
@pytest.mark.parametrize("world", [2, 3])
def test_shards_are_disjoint_cover_the_epoch_and_rebuild_the_batch(backend, world):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    images, _ = make_arrays(60, seed=0)
    labels = np.arange(60)  # the labels name the images, so the loaders show which they yield
    spec, batch = get_preset("flip_affine"), 12

    def loader(shard, train=True):
        return make_loader(images, labels, spec, batch, train=train, backend=backend, seed=5,
                           shard=shard)

    whole = loader((0, 1))
    shards = [loader((rank, world)) for rank in range(world)]
    for epoch in (0, 1):
        for part in [whole, *shards]:
            part.set_epoch(epoch)
        seen = []
        for (x, y), *parts in zip(whole, *shards):
            ys = [py for _, py in parts]
            assert len({len(p) for p in ys}) == 1  # the same per-rank batch on every rank
            # together, in rank order, the shards are the one-process batch, draws included
            torch.testing.assert_close(torch.cat([px for px, _ in parts]), x, rtol=0, atol=0)
            assert torch.equal(torch.cat(ys), y)
            seen += torch.cat(ys).tolist()
        assert len(seen) == len(set(seen)) == len(whole) * batch  # disjoint, the whole epoch
    # evaluation keeps every image, once, with an uneven last batch
    eval_seen = [y.tolist() for rank in range(world) for _, y in loader((rank, world), False)]
    assert sorted(sum(eval_seen, [])) == list(range(60))


@pytest.mark.parametrize("shard, message", [
    ((2, 2), "0 <= rank < world"), ((0, 5), "does not split evenly")])
def test_bad_shards_are_rejected(shard, message):
    images, labels = make_arrays(20, seed=0)
    with pytest.raises(ValueError, match=message):
        make_loader(images, labels, get_preset("none"), 12, train=True, shard=shard)


def test_global_batch_must_split_over_the_ranks(monkeypatch, capsys, tmp_path):
    # rejected before any process group is started, so no other rank is needed
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="3").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        train.main(["--model", "cnn", "--batch-size", "40", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert "must split evenly over the 3 ranks" in capsys.readouterr().err


def test_sweep_of_two_seeds_writes_the_table(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sweep"
    argv = ["--seeds", "0", "1", "--jobs", "2", "--out", str(out), "--",
            "--data-dir", str(data_dir), "--model", "cnn", "--epochs", "1", "--batch-size", "50",
            "--train-subset", "50", "--test-subset", "50", "--device", "cpu", "--no-figures"]
    assert sweep.main(argv) == 0
    table = json.loads((out / "sweep.json").read_text())
    (row,) = table["rows"]
    finals = [json.loads((out / f"base_seed{s}" / "summary.json").read_text())["final"]["test_acc"]
              for s in (0, 1)]
    assert row["seeds"] == [0, 1] and row["failed"] == []
    assert row["final_test_acc"]["mean"] == pytest.approx(statistics.fmean(finals))
    assert row["final_test_acc"]["std"] == pytest.approx(statistics.stdev(finals))
    assert set(row["thresholds"]) == {"86", "88", "90", "92", "94"}
    markdown = (out / "sweep.md").read_text()
    assert "| base | 2 |" in markdown and "final test acc %" in markdown
    assert markdown in capsys.readouterr().out
    # run again: the finished runs are read, not trained again
    assert sweep.main(argv) == 0
    assert capsys.readouterr().out.count("done before") == 2


def test_sweep_grid_plans_every_combination_and_checks_keys(capsys):
    parser = sweep.get_args_parser()
    grid = sweep.parse_grid(["lr=0.01,0.05", "batch_size=50,100"], parser)
    runs = sweep.plan_runs(grid, [0, 1], ["--model", "cnn"])
    assert len(runs) == 8 and len({r["name"] for r in runs}) == 8
    assert runs[0]["argv"] == ["--model", "cnn", "--lr", "0.01", "--batch-size", "50",
                               "--seed", "0"]
    with pytest.raises(SystemExit):
        sweep.parse_grid(["learning_rate=0.1"], parser)
    assert "has no flag --learning-rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--seeds", "0", "--", "--model", "cnn", "--out", "x"])
    assert "drop ['--out']" in capsys.readouterr().err


SYNC_EVERY_MODEL = '''
import torch
from torch import nn

from fastcifar.distributed import init_world
from fastcifar.models import create_model, list_models

world = init_world("cpu", 4, sync_bn=True)
for name in list_models():
    torch.manual_seed(0)
    model = create_model(name).train()
    net = world.wrap(model)
    torch.manual_seed(1 + world.rank)  # each rank its own images
    net(torch.randn(2, 3, 32, 32)).square().mean().backward()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m).__name__.startswith("AllReduce") for m in norms), name
    # statistics over both ranks' images: the running means agree although the images differ
    mean = norms[0].running_mean.clone()
    gathered = [torch.empty_like(mean) for _ in range(world.size)]
    torch.distributed.all_gather(gathered, mean)
    assert torch.equal(gathered[0], gathered[1]), name
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad), name
    if world.is_main:  # one rank prints: two would interleave their lines
        print(name, "synchronised", type(norms[0]).__name__, flush=True)
world.close()
'''


def test_sync_bn_converts_every_registered_model(tmp_path):
    script = tmp_path / "sync_every_model.py"
    script.write_text(SYNC_EVERY_MODEL)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script)]
    done = subprocess.run(cmd, env=rank_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from fastcifar.models import list_models

    for name in list_models():
        assert f"{name} synchronised" in done.stdout, done.stdout


def test_sync_bn_trains_the_speedrun_model(data_dir, tmp_path):
    # the speedrun's frozen-scale BatchNorm used to end in a TypeError under --sync-bn
    out = tmp_path / "speedrun"
    done = torchrun(["--data-dir", str(data_dir), "--model", "speedrun", "--epochs", "1",
                     "--batch-size", "16", "--train-subset", "32", "--test-subset", "16",
                     "--device", "cpu", "--no-figures", "--quiet", "--sync-bn",
                     "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["distributed"]["sync_bn"] is True
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and not any(k.startswith("module.") for k in state["model"])
