"""The only library module that touches Hydra / OmegaConf (schema registration and conversion),
and the one place where an entry point's job becomes an exit code and a message."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plgraph.config import AppConfig, PredictConfig
from plgraph.errors import PlgraphError
from plgraph.runtime.stop import STOP, StopRequested

log = logging.getLogger("plgraph")
EXIT_USAGE = 2
QUOTING = ("a value with spaces, parentheses, commas, brackets, quotes or non-ASCII characters "
           "must be quoted for Hydra, and that quoted for the shell: "
           "'protein=\"/data/my file (1).pdb\"'")
_job_started = False  # run_cli was reached: an exit code from here on is the job's own
EXIT_ABORTED = 130  # a second Ctrl-C: 128 + SIGINT, as a shell reports it
TORCHRUN_MODULES = ("torch.distributed.run", "torch.distributed.launch")


def register_configs() -> None:
    """Register the typed schemas that ``conf/*.yaml`` extend, so Hydra type-checks overrides."""
    ConfigStore.instance().store(name="app_schema", node=AppConfig)
    ConfigStore.instance().store(name="predict_schema", node=PredictConfig)


def to_config(cfg: DictConfig) -> AppConfig | PredictConfig:
    """The composed config as typed dataclasses; a bad value raises ValueError naming the key."""
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise ValueError(str(error).split("\n    full_key")[0]) from None
    assert isinstance(config, AppConfig | PredictConfig), type(config)
    return config


def run_cli(job: Callable[[], int], resume: str = "") -> int:
    """Run ``job`` and return its exit code; never a traceback for what the message explains.

    A stop request (:mod:`plgraph.runtime.stop`) is logged with what was stopped and how to resume,
    and
    returns 128 + signal; a second Ctrl-C returns 130. A plgraph or config error ends the program
    with its message and exit code 2: the message already says what is wrong and what to do.

    Args:
        job: the entry point's work, returning its exit code.
        resume: the command that goes on after a stop, for the message ("" says nothing).
    """
    global _job_started
    _job_started = True
    try:
        code = job()
    except StopRequested as stop:
        stop.resume = stop.resume or resume
        log.warning("%s", stop)
        return stop.exit_code
    except KeyboardInterrupt:
        log.error("aborted by a second Ctrl-C; checkpoints and the processed cache are written "
                  "atomically, so none is left half-written%s",
                  f". Resume with: {resume}" if resume else "")
        return EXIT_ABORTED
    except (PlgraphError, ValueError) as error:
        log.error("%s", error)
        sys.exit(EXIT_USAGE)
    if STOP.signal is not None:
        log.warning("%s arrived as the work ended: nothing was cut short", STOP.signal.name)
    return code


def run_entry(main: Callable[[], None], argv: list[str] | None = None) -> None:
    """Call a ``@hydra.main`` entry point so that a command line that Hydra cannot parse or
    compose ends with exit code 2 (a usage error) like every other one: Hydra itself exits with
    1, which a script would read as "some records failed". An override the grammar refuses is
    caught first, named, with how to quote it, and without Hydra's grammar dump.

    Args:
        main: the decorated entry point.
        argv: the arguments (``sys.argv[1:]`` unless given).
    """
    problem = override_problem(sys.argv[1:] if argv is None else argv)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        main()
    except SystemExit as exit_:
        if exit_.code == 1 and not _job_started:  # Hydra's: it printed why (composition)
            sys.exit(EXIT_USAGE)
        raise


def override_problem(argv: list[str]) -> str:
    """What is wrong with the first command-line override Hydra's grammar refuses ("" if none)."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides = get_args_parser().parse_known_args(argv)[0].overrides
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as error:
            said = str(error).strip().splitlines()[0]
            return f"cannot read the argument {override!r} ({said}); {QUOTING}"
    return ""


def resume_command(argv: list[str] | None = None, environ: Mapping[str, str] | None = None,
                   launcher: list[str] | None = None) -> str:
    """The command line that resumes this run: the one that started it, without ``fresh=true``.

    Under torchrun it is torchrun's command (read from the launcher, this worker's parent
    process), so that the run resumes with as many processes as it had.

    Args:
        argv, environ: this process's (``sys.argv``, ``os.environ``) unless given.
        launcher: torchrun's command line unless read from ``/proc`` (for tests).
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    command = [Path(sys.executable).name, *argv]
    if "TORCHELASTIC_RUN_ID" in environ:  # set by torchrun for its workers
        parent = _parent_command() if launcher is None else launcher
        command = torchrun_command(parent, argv, environ)
    return shlex.join(a for a in command if a.split("=")[0].lstrip("+") != "fresh")


def torchrun_command(parent: list[str], argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """torchrun's command line as it was typed, from the launcher process's ``parent`` argv; when
    that is not torchrun (unreadable, another launcher), one rebuilt from torchrun's environment
    for this node: the same number of processes per node and nodes."""
    for position, part in enumerate(parent):
        if Path(part).name == "torchrun":  # the console script, with or without its interpreter
            return ["torchrun", *parent[position + 1:]]
        module = parent[position + 1] if position + 1 < len(parent) else ""
        if part == "-m" and module in TORCHRUN_MODULES:
            return [Path(parent[0]).name, *parent[position:]]
    per_node = int(environ.get("LOCAL_WORLD_SIZE", environ.get("WORLD_SIZE", "1")))
    nodes = max(int(environ.get("WORLD_SIZE", per_node)) // per_node, 1)
    return ["torchrun", f"--nnodes={nodes}", f"--nproc_per_node={per_node}", *argv]


def _parent_command() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:  # not Linux, or /proc not mounted: torchrun_command rebuilds it
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
