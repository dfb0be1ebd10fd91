"""The terminal report, as rich records it, saved as an HTML page."""

from __future__ import annotations

from ftdoctor.core.untrusted import NAME, block, inline
from ftdoctor.output.document import Outcome


def write_html(outcomes: list[Outcome], path: str, show_traceback: bool = False, width: int = 110) -> None:
    """The terminal report, as rich records it, saved as an HTML page (with the decoded sample and batch table)."""
    from io import StringIO

    from rich.console import Console
    from rich.text import Text

    from ftdoctor.output.terminal import render

    console = Console(
        record=True, file=StringIO(), width=width, force_terminal=True, color_system="truecolor", highlight=False
    )
    for o in outcomes:
        if o.report is not None:
            render(o.report, console=console, show_traceback=show_traceback)
        if o.error is not None:
            console.print(
                Text(
                    f"ftdoctor could not {'walk' if o.report is None else 'finish'} "
                    f"{inline(o.script or '', NAME)}: {block(o.error)}",
                    style="bold red",
                )
            )
        console.print()
    console.save_html(path)
