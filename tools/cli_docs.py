#!/usr/bin/env python3
"""Write docs/cli.md from the click app itself (`make docs`); tests/test_docs.py checks it is current."""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from l2l_omniglot.cli import cli  # noqa: E402

INTRO = """# Command-line reference

`omnimeta` (also `python -m l2l_omniglot` and, from a checkout, `python cli.py`).
Every error a user can fix is printed as one line, `Error: ...`, with exit
status 2 and no traceback.

This page is generated from the click app by `make docs`; `tests/test_docs.py`
fails when it is out of date.
"""


def commands(group: click.Group, prefix: str = "omnimeta"):
    for name in sorted(group.commands):
        command = group.commands[name]
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from commands(command, path)
        else:
            yield path, command


def option_row(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return f"| `{param.human_readable_name}` | argument{' (required)' if param.required else ''} |"
    names = " / ".join(f"`{n}`" for n in param.opts + param.secondary_opts)
    help_text = (param.help or "").replace("|", "\\|").replace("\n", " ")
    if isinstance(param.type, click.Choice):
        help_text = f"One of {', '.join(param.type.choices)}. " + help_text
    if param.show_default and param.default is not None and not param.is_flag:
        help_text += f" [default: {param.default}]"
    return f"| {names} | {help_text} |"


def render() -> str:
    parts = [INTRO]
    for path, command in commands(cli):
        context = click.Context(command, info_name=path)
        usage = " ".join(command.collect_usage_pieces(context))
        parts.append(f"## `{path}`\n\n```\n{path} {usage}\n```\n\n{inspect.cleandoc(command.help or '')}\n")
        rows = [option_row(p) for p in command.params if p.name != "help"]
        parts.append("| option | meaning |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    (REPO / "docs" / "cli.md").write_text(render())
