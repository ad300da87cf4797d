"""benchmarks.processes: how a benchmark takes Ctrl-C and SIGTERM (its clean-up is not broken off)."""

import os
import signal
import subprocess
import sys

import pytest

from benchmarks import processes
from benchmarks.processes import cleaning_up, interruptible, stop


@pytest.fixture(autouse=True)
def _fresh():
    processes._Interrupts.last, processes._Interrupts.held, processes._Interrupts.cleaning = None, False, 0
    yield
    processes._Interrupts.last, processes._Interrupts.held, processes._Interrupts.cleaning = None, False, 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_with_a_message(signum):
    done, before = [], signal.getsignal(signum)
    with pytest.raises(SystemExit) as stopped, interruptible("its rows are deleted"):
        try:
            os.kill(os.getpid(), signum)
            raise AssertionError("not interrupted")
        finally:
            done.append("clean-up")
    assert stopped.value.code == "interrupted: nothing recorded (its rows are deleted)"
    assert done == ["clean-up"]
    assert signal.getsignal(signum) is before  # the handlers are given back


def test_a_signal_during_a_clean_up_waits_for_its_end():
    steps = []
    with pytest.raises(SystemExit), interruptible():
        with cleaning_up():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)  # (timeout sends it to the process group too: the same request)
            steps.append("deleted")
        steps.append("went on")
    assert steps == ["deleted"]


def test_stop_ends_a_child_that_ignores_sigterm_in_time():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    child.stdout.readline()  # its handler is set
    stop(child, within_s=0.5)
    assert child.returncode == -signal.SIGKILL


def test_an_error_the_interrupt_turned_into_is_an_interruption():
    """(Bytewax's run_main raises its own error for a KeyboardInterrupt in an operator.)"""
    with pytest.raises(SystemExit) as stopped, interruptible():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt as exc:
            raise RuntimeError("error calling on_batch") from exc
    assert str(stopped.value.code).startswith("interrupted: nothing recorded")


def test_an_error_without_an_interrupt_goes_on():
    with pytest.raises(RuntimeError), interruptible():
        raise RuntimeError("a failed run")
