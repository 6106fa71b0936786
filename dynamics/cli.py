"""The `dyn` command line: one click group whose commands load only when called.

The core names none of the stages' commands: each stage lists its own (name, import path,
one-line help) in a module that imports nothing, and pyproject.toml's `dyn.commands` entry
points name those modules. `dyn --help` therefore imports neither torch nor matplotlib nor
h5py. A command whose module is not installed is not shown.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from . import __version__, plugins
from .errors import DynError
from .plugins import TORCH_HINT  # noqa: F401  (the training stage's commands quote it)

# The core's own commands; the stages' come from the `dyn.commands` entry points.
CORE_COMMANDS: dict[str, tuple[str, str]] = {
    "import": (f"{__package__}.importers.cli:import_", "Turn other projects' checkpoints or predictions into runs."),
    "inspect": (f"{__package__}.inspect:inspect", "Show what a run file holds and whether it is complete."),
}
STAGE_ORDER = ("train", "analyze")  # `dyn --help` lists training, then analysis, then the core


def commands() -> dict[str, tuple[str, str]]:
    """name -> (import path, short help) of every command, in `dyn --help` order."""
    out: dict[str, tuple[str, str]] = {}
    stages = plugins.targets("dyn.commands")
    for stage in sorted(stages, key=lambda s: (STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER), s)):
        try:
            table = plugins.resolve(stages[stage])
        except (ImportError, AttributeError):
            continue  # a stage that is not installed adds no commands
        out.update(table)
    out.update(CORE_COMMANDS)
    return out


def _available(path: str) -> bool:
    module = path.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

    def __init__(self, *args, lazy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = lazy  # a table, or a function giving one (read on first use)

    @property
    def lazy(self) -> dict[str, tuple[str, str]]:
        if callable(self._lazy):
            self._lazy = self._lazy()
        return self._lazy or {}

    def list_commands(self, ctx):
        return [n for n, (p, _) in self.lazy.items() if _available(p)] + sorted(self.commands)

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy or not _available(self.lazy[name][0]):
            return None
        module, attr = self.lazy[name][0].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if plugins.missing_torch(e):
                return _missing_torch(name, self.lazy[name][1])
            raise

    def format_commands(self, ctx, formatter):
        rows = [(n, self.lazy[n][1] if n in self.lazy else self.commands[n].get_short_help_str())
                for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _missing_torch(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args):
        raise DynError(f"dyn {name} {TORCH_HINT}", exit_code=2)

    return stub


@click.group(cls=LazyGroup, lazy=commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="dyn")
def cli():
    """dyn: training dynamics of SGD and its EMA networks, from saved checkpoints.

    \b
    Train and record (GPU, or CPU for the small digits set):
      dyn train --schedule constant --decay 0.999,0.9995
    Analyse anywhere, without torch:
      dyn inspect runs/x.h5
      dyn analyze stability runs/x.h5 --out stability.png
      dyn table runs/table1/*.h5

    Run files are HDF5, documented in docs/format.md.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: DynError becomes `dyn: error: ...` and its exit code, never a traceback."""
    try:
        _main(argv)
    except SystemExit as e:  # every way out, after a failure HDF5 cannot close, skips its teardown
        _exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))


def _main(argv: list[str] | None) -> None:
    try:
        # standalone_mode=False returns ctx.exit()'s code instead of raising it
        code = cli.main(args=argv, prog_name="dyn", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except DynError as e:
        click.echo(f"dyn: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("dyn: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("dyn: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:  # `dyn`, `dyn analyze`: the help, not an error line
        e.show()
        sys.exit(e.exit_code)
    except click.UsageError as e:  # one line, as for every other refusal, with where to look
        where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
        click.echo(f"dyn: error: {e.format_message()}{where}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `dyn inspect x.h5 | head`
        sys.stderr.close()
        sys.exit(0)


def _exit(code: int) -> None:
    """Exit; without Python's shutdown when HDF5 failed on a file (writer.BROKEN): its atexit
    handler would close that file's half-destroyed objects again and crash (a segfault). Failed
    writes themselves never get that far: dyn.safeio absorbs them before HDF5 sees them."""
    writer = sys.modules.get(f"{__package__}.writer")
    if writer is not None and writer.BROKEN:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # closing that file would flush it, which can crash libhdf5
    sys.exit(code)


if __name__ == "__main__":
    main()
