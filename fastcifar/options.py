"""How a run is made, beside its Recipe: ``RunOptions``.

Each option is one field, declared as a Recipe knob is (``option``: its default, its --flag's
help and group, and what --resume does with it), and checked in ``__post_init__``: the one place
its values are validated, for ``fastcifar.fit`` and the command line alike. fastcifar.cli makes
every flag of ``python -m fastcifar.train`` from these fields.
"""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from .data import ENV_DATA_DIR
from .fields import ConfigError, RecipeError, knob

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's
# which BatchNorm+ReLU runs (fastcifar.models.norms); auto: triton on the GPUs it is tested on
BN_RELU_CHOICES = ("eager", "triton", "auto")

# what --resume does with an option (fastcifar.resume):
RECORDED = "recorded"  # the run's own: taken from its config.json; another value is refused
HONOURED = "honoured"  # applies to the resumed process (where it stops, how often it saves...)
REMEMBERED = "remembered"  # recorded, and may be changed by naming it again
NEW_RUN = "new run only"  # names a new run: refused with --resume

# the flag groups of python -m fastcifar.train, in order
GROUPS = {
    "run": "how to run",
    "speed": "speed switches (auto: measured on this machine where there is a choice: each "
             "candidate is checked, then timed, and the fastest correct one beyond the noise "
             "wins; decisions are cached; fastcifar-doctor shows them)",
    "output": "output",
    "data": "data",
}
SWITCHES = ("amp", "channels_last", "compile", "bn_relu", "cpu_malloc")  # config["switches"]


def option(default, help: str, group: str, resume: str = HONOURED, **metadata):
    """A RunOptions field: ``metadata`` may give ``choices``, ``metavar`` and, for a bool,
    ``flag``: the flag that sets it to the other value (--quiet; --no-figures where the
    default is True)."""
    return knob(default, help, group=group, resume=resume, **metadata)


@dataclass(frozen=True)
class RunOptions:
    """How a run is made; with ``resume`` the options marked RECORDED come from the run."""

    val_split: int = option(
        0, "hold out N training images (stratified) for model selection and the plateau "
        "monitor; without it both use the test set, as the report did", "run", RECORDED,
        metavar="N")
    seed: int = option(0, "the seed of the weights, the order and the augmentation", "run",
                       RECORDED)
    device: str = option("auto", "where to train (auto: CUDA when torch sees it, else the CPU)",
                         "run", choices=("auto", "cpu", "cuda"))
    sync_bn: bool = option(False, "under torchrun: BatchNorm statistics over the global batch "
                           "(default: each rank's own); works for every model", "run",
                           flag="--sync-bn")
    loader: str = option(
        "auto", "augmentation backend (auto: DALI against torch, measured on CUDA where DALI "
        "is installed; torch elsewhere)", "speed", RECORDED, choices=("auto", "torch", "dali"))
    amp: str = option(
        "auto", "autocast dtype; fp16 adds a GradScaler (auto: bf16 on GPUs with native bf16, "
        "fp16 on other GPUs; on a CPU with native bf16 bf16 against fp32, measured; off on "
        "other CPUs)", "speed", RECORDED, choices=("auto", "bf16", "fp16", "off"))
    channels_last: str = option(
        "auto", "model and batches in channels_last memory format (auto: on against off, "
        "measured)", "speed", RECORDED, choices=("auto", "on", "off"))
    compile: str = option(
        "auto", "torch.compile mode (auto: 'default' on CUDA); compile time is measured and "
        "reported apart from training time", "speed", RECORDED,
        choices=("auto", "off", *COMPILE_MODES))
    bn_relu: str = option(
        "auto", "BatchNorm+ReLU implementation (auto: on CUDA the Triton kernel, checked "
        "against eager at the model's layer shapes, then timed against eager under the run's "
        "compile mode; a model without BN+ReLU, the speedrun, refuses triton)", "speed",
        RECORDED, choices=BN_RELU_CHOICES)
    auto_cache: bool = option(
        True, "measure the auto switches afresh and store nothing (also "
        "FASTCIFAR_AUTO_CACHE=off); the cache is $XDG_CACHE_HOME/fastcifar, else "
        "~/.cache/fastcifar", "speed", flag="--no-auto-cache")
    cpu_malloc: str = option(
        "auto", "keep: glibc keeps freed memory in its heap, so a step's activations are not "
        "page-faulted in afresh every step (auto: keep on the CPU)", "speed", RECORDED,
        choices=("auto", "keep", "default"))
    train_subset: int | None = option(None, "train on the first N training images only (quick "
                                      "checks)", "run", RECORDED, metavar="N")
    test_subset: int | None = option(None, "evaluate on the first N test images only (quick "
                                     "checks)", "run", RECORDED, metavar="N")
    check_every: int | None = option(None, "read the loss back every K steps (default: 1 on "
                                     "CPU, 50 on CUDA)", "run", metavar="K")
    out: str | Path | None = option(None, "run folder (default runs/<recipe>-<time>[-N], never "
                                    "one that is taken)", "output", NEW_RUN)
    resume: str | Path | None = option(None, "continue the run in DIR", "output", metavar="DIR")
    stop_after: int | None = option(
        None, "stop after epoch N, as Ctrl-C would (the schedule still spans --epochs); "
        "continue later with --resume", "output", metavar="N")
    checkpoint_minutes: float = option(
        10.0, "write last.pt mid-epoch at least every M minutes of the run, so that Ctrl-C "
        "loses at most that much (0: after every step); --resume continues from the exact "
        "step", "output", metavar="M")
    stop_after_steps: int | None = option(
        None, "stop after N steps, checkpointing first, as Ctrl-C after a checkpoint would (a "
        "test hook); continue with --resume", "output", metavar="N")
    quiet: bool = option(False, "no progress bars or epoch lines; only the one-line final "
                         "result", "output", flag="--quiet")
    figures: bool = option(True, "no figures in the run folder (remembered on resume)",
                           "output", REMEMBERED, flag="--no-figures")
    data_dir: str | Path | None = option(
        None, f"folder holding cifar-10-batches-py (default: ${ENV_DATA_DIR}, else ./data)",
        "data")
    download: bool = option(True, "never download; fail if the data is not on disk", "data",
                            flag="--no-download")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, not {value!r}")
            if isinstance(value, float) and math.isnan(value):  # NaN passes every comparison
                raise RecipeError(f.name, "must be a number, not nan")
        if not 0 <= self.seed < 2**32:  # numpy's and torch's seeds alike
            raise RecipeError("seed", f"must be in [0, 2**32), not {self.seed}")
        for name in ("val_split", "check_every", "stop_after", "checkpoint_minutes",
                     "stop_after_steps"):
            if (getattr(self, name) or 0) < 0:
                raise RecipeError(name, f"must be >= 0, not {getattr(self, name)}")
        for name in ("train_subset", "test_subset"):  # 0 would silently mean "all of them"
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise RecipeError(name, f"must be at least 1 (leave it out to use every "
                                  f"image), not {getattr(self, name)}")
        if self.device == "cuda" and not _cuda_available():
            raise ConfigError("--device cuda, but torch sees no CUDA device; use --device cpu "
                              "or auto")

    def torch_device(self):
        """The torch.device ``device`` names (auto: CUDA when torch sees it)."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def switches(self) -> dict:
        """The speed switches as asked (config.json's "switches")."""
        return {name: getattr(self, name) for name in SWITCHES}


def _cuda_available() -> bool:
    import torch  # here: fastcifar.options, and every command's data flags, stay free of torch

    return torch.cuda.is_available()


def resume_rule(name: str) -> str:
    """What --resume does with option ``name`` (RECORDED, HONOURED, REMEMBERED or NEW_RUN)."""
    return FIELDS[name].metadata["resume"]


FIELDS = {f.name: f for f in dataclasses.fields(RunOptions)}
