"""What shells, schedulers and people do to a process, met calmly: the stop signals (Ctrl-C,
Slurm's and Kubernetes' SIGTERM, a closed terminal's SIGHUP), output into a closed pipe, and a
parent (a sweep) that dies without a word."""

import contextlib
import os
import signal
import sys
import threading
import time

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
PARENT_ENV = "FASTCIFAR_PARENT_PID"  # set by a sweep: its children stop when it is gone


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + signum


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised where the process was (``signum`` says which)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


class Stopper:
    """Catches the stop signals while a run lasts (main thread only; a notebook's fit() in
    another thread keeps Python's own Ctrl-C).

    By default a signal raises Interrupted at once: start-up and the final evaluation hold
    nothing worth a checkpoint. While ``defer``red (training) it is only noted, and the run
    stops at its next step, checkpointing it: ``check()`` raises there. Python drops an
    exception raised inside a finalizer; the noted signal still stops the run at ``check()``.
    """

    def __init__(self):
        self.signum: int | None = None
        self._defer = False
        self._previous = {}

    def __enter__(self) -> "Stopper":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if first and not self._defer:  # a repeat (Ctrl-C twice, a scheduler's SIGTERM to
            raise Interrupted(signum)  # each process) must not break the clean-up of the first

    def defer(self, on: bool = True) -> None:
        """From now on signals wait for ``check()`` (``on=False``: they raise at once again)."""
        self._defer = on

    @contextlib.contextmanager
    def deferred(self, on: bool = True):
        """Signals wait for ``check()`` inside (when ``on``), and raise at once again after."""
        self.defer(on)
        try:
            yield self
        finally:
            self.defer(False)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


class _DropWhenClosed:
    """A text stream whose reader may go away (``| head``, a closed terminal): the first
    failed write points the file descriptor at /dev/null, and output is dropped from then on."""

    def __init__(self, stream):
        self._stream, self._dead = stream, False

    def write(self, text):
        if not self._dead:
            try:
                return self._stream.write(text)
            except OSError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self._dead:
            try:
                self._stream.flush()
            except OSError:
                self._drop()

    def _drop(self) -> None:
        self._dead = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())  # so the interpreter's last flush succeeds
            os.close(null)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def closed_pipes_tolerated():
    """For a CLI's main: a closed stdout or stderr drops output and stops nothing."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _DropWhenClosed(sys.stdout), _DropWhenClosed(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


def run_cli(main, argv) -> int:
    """A command's ``main(argv)``, with closed pipes tolerated; a Ctrl-C that nothing else
    handled (start-up, a short command) ends it with one line and 130, not a traceback."""
    with closed_pipes_tolerated():
        try:
            return main(argv)
        except KeyboardInterrupt as err:
            signum = getattr(err, "signum", signal.SIGINT)
            print(f"\ninterrupted by {signal_name(signum)}", file=sys.stderr)
            return exit_code(signum)


def watch_parent() -> None:
    """In a sweep's child: SIGTERM to itself (a checkpoint, then exit) once the sweep that
    started it is gone, even by kill -9, so no run outlives its sweep."""
    try:
        parent = int(os.environ.get(PARENT_ENV, ""))
    except ValueError:
        return

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() == parent:
        threading.Thread(target=watch, name="watch-parent", daemon=True).start()
