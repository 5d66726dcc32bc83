"""Run main.py with a stop signal that this very process sends itself as one phase begins: how
the tests hit a phase exactly, however fast or slow the machine (tests/test_stop.py).

    PLGRAPH_TEST_STOP=preflight:SIGTERM[:RANK] python tests/stop_during.py key=value ...
    PLGRAPH_TEST_STOP=predict:SIGTERM python tests/stop_during.py predict.py key=value ...

The phase comes from the environment, not the command line, so that the ``Resume with:`` command
that main.py prints runs the same script without a signal. With RANK, only that torchrun rank
signals itself (the others learn of it by agreement). The product has no such hook: the test
replaces the phase's function here, and nothing else changes.
"""

from __future__ import annotations

import functools
import importlib
import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENT = "PLGRAPH_TEST_STOP"
# phase: (module, the function or method that starts it)
PHASES = {
    "build": ("plgraph.data.build", "write_shards"),
    "resume": ("plgraph.training.trainer", "find_latest_checkpoint"),
    "mlflow": ("plgraph.training.tracking", "open_run"),
    "preflight": ("plgraph.training.trainer", "Trainer.preflight"),
    "test": ("plgraph.training.trainer", "Trainer.test_best_checkpoint"),
    "predict": ("plgraph.inference.inputs", "featurize_all"),  # predict.py
}


def signal_at_start(phase: str, number: int, replace: Callable = setattr) -> None:
    """Make ``phase`` send ``number`` to this process as it begins, then run as usual.

    Args:
        replace: ``setattr``, or pytest's ``monkeypatch.setattr`` to undo it after the test.
    """
    module_name, attribute = PHASES[phase]
    owner_name, _, name = attribute.rpartition(".")
    owner = importlib.import_module(module_name)
    if owner_name:
        owner = getattr(owner, owner_name)
    original = getattr(owner, name)

    @functools.wraps(original)
    def signalled(*args, **kwargs):
        os.kill(os.getpid(), number)
        return original(*args, **kwargs)

    replace(owner, name, signalled)


if __name__ == "__main__":
    request = os.environ.pop(ENVIRONMENT, "")
    if request:
        phase, signal_name, *rank = request.split(":")
        if not rank or os.environ.get("RANK", "0") == rank[0]:
            signal_at_start(phase, signal.Signals[signal_name])
    arguments = sys.argv[1:]
    script = REPO / (arguments.pop(0) if arguments[:1] == ["predict.py"] else "main.py")
    sys.argv = [str(script), *arguments]
    runpy.run_path(str(script), run_name="__main__")
