"""What the `etl-assets` commands share: exit codes, the error style, status colours and the
help layout, plus the group that imports a command's module only when that command is used.

Kept to click and the standard library: `etl-assets --help` (and every command) imports this
module first, so whatever it imports every command pays for.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import click

# Exit codes, the same for the same kind of error in every command.
USAGE = 2  # a bad option, an unknown pipeline or partition
FAILED = 1  # the command ran and what it did failed (a run, an invalid spec, an unreachable service)

STATUS_COLOURS = {"success": "green", "partial": "yellow", "failed": "red", "canceled": "red", "failure": "red"}


class CliError(click.ClickException):
    """One sentence in click's own `Error: …` style; exit code USAGE."""

    exit_code = USAGE


class CliFailure(CliError):
    """The same sentence for a command that ran and failed; exit code FAILED."""

    exit_code = FAILED


def _fail(message: str, code: int = USAGE) -> NoReturn:
    raise (CliFailure if code == FAILED else CliError)(message)


def colour_on(stream: TextIO | None = None) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (https://no-color.org)."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def status_word(word: str | None, width: int = 0, stream: TextIO | None = None) -> str:
    """A run status padded to `width`: green, yellow or red on a terminal, plain otherwise."""
    text = f"{word or '-':<{width}}"
    colour = STATUS_COLOURS.get((word or "").lower())
    return click.style(text, fg=colour) if colour and colour_on(stream) else text


class HelpGroup(click.Group):
    """Lists each command's whole first sentence in `--help`, not a 45-character stub."""

    group_class = type  # subgroups list their commands the same way

    def help_line_of(self, ctx: click.Context, name: str) -> str | None:
        """The help line of command `name`, None for a hidden or unknown one."""
        cmd = self.get_command(ctx, name)
        return None if cmd is None or cmd.hidden else cmd.get_short_help_str(limit=1_000)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            line = self.help_line_of(ctx, name)
            if line is not None:
                rows.append((name, line))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives ("module:attribute") and its help line, for `--help` without
    importing it."""

    target: str
    help_line: str

    def load(self) -> click.Command:
        module, _, attribute = self.target.partition(":")
        cmd = getattr(importlib.import_module(module), attribute)
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return cmd


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands by name; a lazy one's module is imported the first time it is read.

    `click.Group.commands` stays a mapping of real commands for code that walks it (tests,
    docs); only listing the names imports nothing.
    """

    def __init__(self, table: Mapping[str, LazyCommand]) -> None:
        self.table = dict(table)
        self.loaded: dict[str, click.Command] = {}

    def unloaded_help(self, name: str) -> str | None:
        """The table's help line of a command not imported yet; None once it is."""
        return self.table[name].help_line if name in self.table and name not in self.loaded else None

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.loaded:
            self.loaded[name] = self.table[name].load()
        return self.loaded[name]

    def __setitem__(self, name: str, cmd: click.Command) -> None:
        self.loaded[name] = cmd

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.table.pop(name, None)
        self.loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.table), **dict.fromkeys(self.loaded)})

    def __len__(self) -> int:
        return len(self.table.keys() | self.loaded.keys())


class LazyGroup(HelpGroup):
    """click's "lazily loading subcommands" pattern: `lazy` maps each name to a `LazyCommand`,
    whose module `get_command` imports only when the command runs (or its own help is shown)."""

    def __init__(self, name: str | None = None, lazy: Mapping[str, LazyCommand] | None = None,
                 **attrs: Any) -> None:
        super().__init__(name, **attrs)
        commands = LazyCommands(lazy or {})
        commands.update(self.commands)  # any given eagerly, as `commands=`
        self.commands = commands

    @property
    def lazy(self) -> LazyCommands:
        if not isinstance(self.commands, LazyCommands):
            raise TypeError("LazyGroup.commands was replaced")
        return self.commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.lazy.get(cmd_name)

    def help_line_of(self, ctx: click.Context, name: str) -> str | None:
        line = self.lazy.unloaded_help(name)
        return line if line is not None else super().help_line_of(ctx, name)
