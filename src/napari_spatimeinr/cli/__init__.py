"""Command line: ``spatimeinr train | render | evaluate | motion | info | demo`` (DESIGN.md, "CLI contract").

One module per command (:mod:`.train`, :mod:`.render`, ...), the parser (:mod:`.parser`) and the
console helpers (:mod:`.console`); :func:`main` runs the command the parser names.

Errors print one line to stderr and exit with status 2 (usage errors too); progress goes to stderr;
results to files. Limits before work (DESIGN.md, "CLI contract"): every command runs the gate of
:mod:`napari_spatimeinr.limits` from shapes alone before it allocates or writes anything (writable
target, format and free disk, plan, peak memory); ``--force`` skips the free-disk check only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from ..core.errors import SpatimeINRError
from .demo import cmd_demo
from .evaluate import cmd_evaluate
from .info import cmd_info
from .motion import cmd_motion
from .parser import build_parser
from .render import cmd_render
from .train import cmd_train, train_config_of

__all__ = ["build_parser", "main", "train_config_of"]


#: what each command runs (the parser names the command, so the commands may use the parser)
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "render": cmd_render,
    "evaluate": cmd_evaluate,
    "motion": cmd_motion,
    "info": cmd_info,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    from ..core.resources import tune_malloc

    tune_malloc()  # freed frames go back to the system (long renders and trainings)
    try:
        return int(COMMANDS[args.command](args) or 0)
    except SpatimeINRError as err:
        print(f"spatimeinr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spatimeinr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``spatimeinr info M | head``): end quietly
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (no flush error at exit)
        except OSError:  # pragma: no cover
            pass
        return 141
    except Exception as err:  # one clear line, the traceback only on request
        if args.debug:
            raise
        print(
            f"spatimeinr: unexpected error: {type(err).__name__}: {err} (run with --debug for "
            "details)",
            file=sys.stderr,
        )
        return 1
