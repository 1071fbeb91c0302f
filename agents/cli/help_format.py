"""``--help`` that shows every default: argparse's own, or the one the settings fall back to.

Most agent options have no argparse default (``None`` means "not given", so the
environment and the file can still supply the value); their default lives in the
configuration schema, and is shown from there.
"""

from __future__ import annotations

import argparse

from agents.runtime import config_schema


def shown(value: object) -> str:
    """A default as a person types it."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class DefaultsShown(argparse.HelpFormatter):
    """Appends ``(default: …)`` to an option's help unless the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            not action.option_strings
            or action.nargs == 0
            or action.default is argparse.SUPPRESS
            or "default" in text
        ):
            return action.help
        default = action.default
        if default is None:
            words = self._prog.split()
            group = words[1] if len(words) > 1 else ""
            default = config_schema.defaults(group).get(action.dest)
        if default in (None, "") or isinstance(default, bool):
            return action.help
        suffix = f"(default: {shown(default)})".replace("%", "%%")
        return f"{text} {suffix}" if text else suffix
