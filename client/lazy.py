"""Commands imported only when named: the server's and the worker's commands stay out of
a user command's imports (and the coordinator's out of ``gridpilot pilot``'s)."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import typer.core


class LazyGroup(typer.core.TyperGroup):
    """A group whose ``lazy`` commands are imported only when named (or listed in help)."""

    lazy: ClassVar[dict[str, str]] = {}
    """Command name -> ``module:function`` returning the command."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, function = target.partition(":")
        command = getattr(importlib.import_module(module_name), function)()
        command.name = cmd_name
        return command
