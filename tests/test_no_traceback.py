"""No traceback from bad input, in any CLI: flags and values drawn at random (out-of-range, huge
and negative numbers, NaN and infinities, words where numbers belong, paths that are files,
missing, below a file, or have spaces) end in exit 0 or 2 with at most one ``error:`` line.

Bounded for CI: a training run that the drawn flags allow stops after one step (flags appended
last win), a sweep's children are stood in for, no download leaves the machine."""

import contextlib
import io
import shutil
import tempfile
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastcifar import analyze, doctor, evaluate, sweep, train
from fastcifar.data import __main__ as data_cli
from fastcifar.data.synthetic import write_synthetic_cifar

NUMBER = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["0", "1", "2", "-1", "0.5", "nan", "inf", "-inf", "1e309", "abc", "",
                     "3.0", "1e-30", "99999999999999999999999"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
PATH_KINDS = ["missing", "file", "below_a_file", "with spaces", "empty", "a_run", "not_a_run",
              "data"]
PATH = st.sampled_from(PATH_KINDS)
LIMITS = settings(max_examples=150, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small data set and a stopped run, both copied per example (a run may change them)."""
    root = tmp_path_factory.mktemp("world")
    write_synthetic_cifar(root / "data", n_train=100, n_test=50, seed=0)
    assert train.main(["--model", "cnn", "--epochs", "2", "--stop-after", "1", "--batch-size",
                       "50", "--data-dir", str(root / "data"), "--out", str(root / "a_run"),
                       "--quiet", "--device", "cpu", "--no-figures", "--no-download"]) == 0
    return root


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # a download that is allowed fails at once, from a file that is not there
    monkeypatch.setenv("FASTCIFAR_DATA_URL", (tmp_path / "nowhere.tar.gz").as_uri())


def make_path(kind: str, world: Path, scratch: Path) -> str:
    target = scratch / f"p{len(list(scratch.iterdir()))}"
    if kind == "file":
        target.write_text("not a folder\n")
    elif kind == "below_a_file":
        target.write_text("")
        target = target / "below"
    elif kind == "with spaces":
        target = scratch / f"a folder {len(list(scratch.iterdir()))}"
    elif kind == "empty":
        target.mkdir()
    elif kind == "a_run":
        shutil.copytree(world / "a_run", target)
    elif kind == "not_a_run":
        target.mkdir()
        (target / "notes.txt").write_text("mine\n")
    elif kind == "data":
        return str(world / "data")
    return str(target)


def outcome(main, argv) -> tuple[object, str]:
    """(exit code, stderr) as a shell would see them; "traceback" for an escaping exception."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: B036 (a KeyboardInterrupt would be one too)
            traceback.print_exc()
            code = "traceback"
    return code, err.getvalue()


def check(main, argv):
    code, err = outcome(main, argv)
    assert "Traceback" not in err, f"{argv}\n{err}"
    assert code in (0, 2), f"{argv} -> {code}\n{err}"
    assert len([line for line in err.splitlines() if "error:" in line]) <= 1, f"{argv}\n{err}"


def flag_pairs(names: list[str], paths: list[str] = ()):
    """Up to four (flag, value) pairs: numbers for ``names``, path kinds for ``paths``."""
    pair = st.one_of(st.tuples(st.sampled_from(names), NUMBER),
                     *([st.tuples(st.sampled_from(paths), PATH)] if paths else []))
    return st.lists(pair, max_size=4)


def expand(pairs, world: Path, scratch: Path, paths=()) -> list[str]:
    argv = []
    for flag, value in pairs:
        argv += [flag, make_path(value, world, scratch) if flag in paths else value]
    return argv


TRAIN_NUMBERS = ["--epochs", "--batch-size", "--lr", "--momentum", "--weight-decay",
                 "--label-smoothing", "--seed", "--val-split", "--train-subset", "--test-subset",
                 "--check-every", "--stop-after", "--checkpoint-minutes", "--ema-decay",
                 "--warmup-fraction", "--plateau-factor", "--plateau-patience"]
TRAIN_PATHS = ["--out", "--resume", "--data-dir"]
# last, so they win: one step at most, on the CPU, no figures, nothing printed to speak of
BOUNDED = ["--stop-after-steps", "1", "--device", "cpu", "--no-figures", "--quiet",
           "--compile", "off", "--loader", "torch"]


@LIMITS
@given(pairs=flag_pairs(TRAIN_NUMBERS, TRAIN_PATHS), model=st.booleans(),
       download=st.booleans())
def test_train(world, pairs, model, download):
    with tempfile.TemporaryDirectory() as scratch:
        argv = expand(pairs, world, Path(scratch), TRAIN_PATHS)
        if model and "--resume" not in argv:
            argv = ["--model", "cnn", "--data-dir", str(world / "data"), *argv]
        check(train.main, [*argv, *BOUNDED, *([] if download else ["--no-download"])])


@LIMITS
@given(pairs=flag_pairs(["--batch-size"], ["--checkpoint", "--data-dir"]),
       run=st.sampled_from([None, *PATH_KINDS]))
def test_evaluate(world, pairs, run):
    with tempfile.TemporaryDirectory() as scratch:
        argv = expand(pairs, world, Path(scratch), ["--checkpoint", "--data-dir"])
        if run is not None:
            argv.insert(0, make_path(run, world, Path(scratch)))
        check(evaluate.main, [*argv, "--device", "cpu", "--no-download"])


@LIMITS
@given(pairs=flag_pairs(["--seed"], ["--out", "--data-dir"]),
       augment=st.sampled_from([None, "flip_crop", "sparkles", ""]))
def test_analyze(world, pairs, augment):
    with tempfile.TemporaryDirectory() as scratch:
        argv = expand(pairs, world, Path(scratch), ["--out", "--data-dir"])
        argv += ["--augment", augment] if augment is not None else []
        check(analyze.main, [*argv, "--no-download"])


@LIMITS
@given(data=PATH, download=st.booleans())
def test_data_check(world, data, download):
    with tempfile.TemporaryDirectory() as scratch:
        argv = ["--data-dir", make_path(data, world, Path(scratch))]
        check(data_cli.main, [*argv, *([] if download else ["--no-download"])])


SEED_LISTS = st.lists(NUMBER, min_size=1, max_size=3)
GRID = st.lists(st.sampled_from(["lr=0.1,0.2", "lr=nan", "batch_size=50", "epochs=0",
                                 "seed=1", "out=x", "lr", "=", "lr=0.1,0.1", "bogus=1",
                                 "batch-size=50,abc"]), max_size=3)


@LIMITS
@given(seeds=SEED_LISTS, grid=GRID, jobs=st.sampled_from([None, "0", "-1", "2", "x"]),
       out=PATH, train_pairs=flag_pairs(["--epochs", "--lr", "--seed"]))
def test_sweep(world, monkeypatch, seeds, grid, jobs, out, train_pairs):
    # the children are stood in for: each "fails" at once, so the report path runs too
    monkeypatch.setattr(sweep.Children, "run", lambda self, cmd, env, log: 2)
    with tempfile.TemporaryDirectory() as scratch:
        argv = ["--seeds", *seeds, "--out", make_path(out, world, Path(scratch))]
        for item in grid:
            argv += ["--grid", item]
        argv += ["--jobs", jobs] if jobs is not None else []
        argv += ["--", "--model", "cnn", "--data-dir", str(world / "data"),
                 *expand(train_pairs, world, Path(scratch))]
        code, err = outcome(sweep.main, argv)
        assert "Traceback" not in err, f"{argv}\n{err}"
        assert code in (0, 1, 2), f"{argv} -> {code}\n{err}"  # 1: a run failed, as planted


@LIMITS
@given(model=st.sampled_from(["cnn", "speedrun", "", "nope", "CNN", "cnn "]),
       device=st.sampled_from([None, "cpu", "cuda", "auto", "tpu", ""]),
       out=st.sampled_from([None, *PATH_KINDS]), as_json=st.booleans())
def test_doctor(world, monkeypatch, model, device, out, as_json):
    # its measurements are stood in for (each takes seconds): what is drawn is its arguments
    monkeypatch.setattr(doctor, "diagnose", lambda model, device, say, save=None: {"ok": 1})
    with tempfile.TemporaryDirectory() as scratch:
        argv = ["--model", model, *(["--device", device] if device is not None else [])]
        argv += ["--out", make_path(out, world, Path(scratch))] if out is not None else []
        check(doctor.main, argv + (["--json"] if as_json else []))
