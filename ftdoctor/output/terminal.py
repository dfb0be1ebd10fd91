"""Rendering the report for a terminal (rich) or as plain text; the data lives in report.py."""

from __future__ import annotations

import os
from typing import Any

from ftdoctor.core.report import CHECK_ERROR, INTERNAL_ERROR, Report
from ftdoctor.core.untrusted import DETAIL, NAME, TITLE, block, defuse_lines, inline, visible

_STATUS = {"pass": ("PASS", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "bold red"), "skip": ("SKIP", "dim")}
_SEVERITY = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render(report: Report, console: Any = None, show_traceback: bool = False) -> None:
    """Print the report with rich: per stage its status, findings with evidence, the user's line and the fix."""
    from rich.console import Console, Group
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    from ftdoctor.core.source import source_lines

    console = console or Console()
    script = fit_path(inline(_shown(report.script), NAME) if report.script else "<in-process>", console.width - 9)
    head = Text.assemble(("ftdoctor ", "bold"), (script, "bold cyan"))
    if report.task:
        task = f"task: {inline(report.task, NAME)}"
        # The task goes on its own line rather than being split from its name at the edge of the screen.
        if head.cell_len + 2 + len(task) <= console.width:
            head.append("  " + task, style="dim")
        else:
            head.append("\n" + " " * 9 + task, style="dim")
    console.print(head)
    budget = report.budget or {}
    if budget.get("device") and budget["device"] != "cpu":
        console.print(
            Text(
                " " * 9 + f"the model stages run on {inline(budget['device'], NAME)}, where the script put the model",
                style="dim",
            )
        )
    if budget.get("reduced"):
        console.print(
            Text(
                " " * 9
                + f"budget {inline(budget.get('mode', 'fast'), NAME)}: "
                + "; ".join(inline(note) for note in budget["reduced"])
                + " (`--budget full` runs the batch as configured)",
                style="dim",
            )
        )
    inner = max(20, console.width - 4)  # a finding's panel: borders and padding
    for st in report.stages:
        label, style = _STATUS[st.status]
        line = Text.assemble(
            (f" {label} ", f"{style} reverse"), " ", (f"{st.stage:<9}", "bold"), (f" {st.duration_s:6.2f}s", "dim")
        )
        if st.reason:
            line.append(f"  {inline(st.reason)}", style="dim")
        if st.crashed and st.status != "skip":
            names = ", ".join(inline(n) for n in st.crashed)
            line.append(f"  incomplete: the check {names} crashed (see below)", style="magenta")
        console.print(line)
        for f in st.findings:
            parts: list[Any] = []
            title = Text.assemble(
                (f"{inline(f.code, NAME)} ", _SEVERITY.get(f.severity, "bold")), (inline(f.title, TITLE), "bold")
            )
            parts.append(Text(inline(f.detail)))
            if f.location:
                src = source_lines(f.location)
                parts.append(Text("at " + fit_path(inline(_shown_location(f.location), NAME), inner - 3), style="dim"))
                if src is not None:
                    start, code = src
                    # Long lines wrap inside the panel: a cropped line would cut the user's names in half.
                    parts.append(
                        Syntax(
                            visible(code, None),
                            "python",
                            line_numbers=True,
                            start_line=start,
                            theme="ansi_dark",
                            highlight_lines={int(f.location.rsplit(":", 1)[1])},
                            word_wrap=True,
                        )
                    )
            if f.fix:
                parts.append(Text.assemble(("fix: ", "bold green"), inline(f.fix)))
            if show_traceback and f.evidence.get("traceback"):
                parts.append(Text(block(f.evidence["traceback"]), style="dim"))
            console.print(
                Panel(
                    Group(*parts),
                    title=title,
                    title_align="left",
                    border_style=_SEVERITY.get(f.severity, "bold"),
                    expand=True,
                    padding=(0, 1),
                )
            )
        _evidence(console, st, Table, Text)
    s = report.summary()
    if report.stopped:
        verdict = Text(" STOPPED ", style="bold red reverse")
    elif not report.ok:
        verdict = Text(" FAILED ", style="bold red reverse")
    elif not report.complete:  # never "OK" when part of the pipeline went unjudged because a check failed
        verdict = Text(" INCOMPLETE ", style="bold magenta reverse")
    else:
        verdict = Text(" OK ", style="bold green reverse")
    counts = (
        sum(1 for f in report.findings if f.severity == "error"),
        sum(1 for f in report.findings if f.severity == "warning"),
    )
    console.print(
        Text.assemble(
            verdict,
            f"  {counts[0]} errors, {counts[1]} warnings  ·  ",
            f"{s['pass']} pass, {s['warn']} warn, {s['fail']} fail, {s['skip']} skip  ·  {report.duration_s:.1f}s",
        )
    )
    if report.suppressed:
        listed = ", ".join(f"{inline(x.finding.code, NAME)} ({inline(x.reason, NAME)})" for x in report.suppressed)
        console.print(
            Padding(Text(f"{len(report.suppressed)} suppressed: {listed}", style="dim"), (0, 0, 0, 2), expand=False)
        )
    for err in report.check_errors:
        console.print(Text(CHECK_ERROR + ":\n" + block(err), style="magenta"))
    for err in report.internal_errors:
        console.print(Text(INTERNAL_ERROR + ":\n" + block(err), style="magenta"))


def fit_path(path: str, width: int) -> str:
    """``path`` whole when it fits in ``width`` columns, else its last components after "…/": a path is never
    broken in the middle of a name, and the file name and line always show."""
    if len(path) <= width:
        return path
    parts = path.replace("\\", "/").split("/")
    for i in range(1, len(parts)):
        tail = "…/" + "/".join(parts[i:])
        if len(tail) <= width:
            return tail
    return parts[-1]


def _shown(path: str) -> str:
    """A path as the user should see it: relative to the working directory when it is inside it."""
    from ftdoctor.core.source import display_path

    return display_path(path) if os.path.isabs(path) else path


def _shown_location(location: str) -> str:
    if "#cell" in location:
        path, rest = location.split("#cell", 1)
        return _shown(path) + "#cell" + rest
    path, sep, line = location.rpartition(":")
    return _shown(path) + ":" + line if sep else location


def _evidence(console, st, Table, Text) -> None:
    ev = st.evidence
    if not ev:
        return
    sample = ev.get("first_sample")
    if sample:
        from rich.padding import Padding

        t = Text("first training sample: ", style="dim")
        if "text" in sample:
            t.append(inline(repr(sample["text"][:200]), None))
        if "label" in sample:
            t.append(f"  label={inline(repr(sample['label']), NAME)}")
            if "label_name" in sample:
                t.append(f" ({inline(sample['label_name'], NAME)})", style="bold")
        console.print(Padding(t, (0, 0, 0, 3), expand=False))  # wrapped lines stay indented under the stage
    view = ev.get("trained_tokens")
    if isinstance(view, dict) and isinstance(view.get("segments"), list):
        _trained_view(console, view, Text)
    batch = ev.get("batch")
    if isinstance(batch, list) and all(isinstance(r, dict) and {"key", "shape", "dtype"} <= r.keys() for r in batch):
        table = Table(title=None, show_edge=False, padding=(0, 1), box=None, header_style="dim")
        for col in ("key", "shape", "dtype"):
            table.add_column(col)
        for row in batch:
            table.add_row(inline(row["key"], NAME), inline(row["shape"], NAME), inline(row["dtype"], NAME))
        console.print(Text("   batch:", style="dim"))
        console.print(table)


def _trained_view(console, view: dict, Text) -> None:
    """One row of the batch with the tokens the loss trains on marked: green where trained, dim where masked
    (without colour, trained text is wrapped in «»)."""
    from rich.padding import Padding

    plain = console.no_color or console.color_system is None
    head = Text(
        f"row {view.get('row', 0)} as trained ({view.get('trained', '?')} of {view.get('tokens', '?')} "
        "tokens trained" + (", «trained»" if plain else ": green trained, grey masked") + "):",
        style="dim",
    )
    body = Text()
    for segment in view["segments"]:
        if not (isinstance(segment, (list, tuple)) and len(segment) == 2):
            continue
        text, trained = inline(segment[0], DETAIL), bool(segment[1])
        if trained:
            body.append(f"«{text}»" if plain else text, style="bold green")
        else:
            body.append(text, style="dim")
    console.print(Padding(head, (0, 0, 0, 3), expand=False))
    console.print(Padding(body, (0, 0, 0, 5), expand=False))


def render_text(report: Report) -> str:
    """The report as plain text (assertion messages, pytest failures, logs)."""
    from io import StringIO

    from rich.console import Console

    buf = StringIO()
    render(report, Console(file=buf, width=110, no_color=True, force_terminal=False, highlight=False))
    return defuse_lines(buf.getvalue())


def print_report(report: Report, file: Any = None, show_traceback: bool = False) -> None:
    """Print the report to ``file`` (stdout) as rich would for that stream (its width, colours), with no line that
    a CI runner would take for a workflow command: a line wrapped inside quoted text can start with anything."""
    import sys
    from io import StringIO

    from rich.console import Console

    target = file if file is not None else sys.stdout
    if target is None:  # started with its standard output closed (`>&-`): nobody to show it to
        return
    probe = Console(file=target, highlight=False)  # what rich decides for the real stream
    buf = StringIO()
    console = Console(
        file=buf,
        width=probe.width,
        color_system=probe.color_system,
        force_terminal=probe.is_terminal,
        no_color=probe.no_color,
        highlight=False,
        legacy_windows=False,
    )
    render(report, console=console, show_traceback=show_traceback)
    target.write(defuse_lines(buf.getvalue()))
    target.flush()
