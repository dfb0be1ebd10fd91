"""The ftdoctor command. Heavy imports (torch, transformers) happen only inside the commands that need them."""

from __future__ import annotations

import argparse
import os
import sys

from ftdoctor.core.rules import SEVERITIES
from ftdoctor.core.stages import DEFAULT_STAGES, STAGES
from ftdoctor.output.document import FORMATS

EXIT_OK, EXIT_FINDINGS, EXIT_HARNESS = 0, 1, 2
# The reference tasks, spelled out here so `ftdoctor --help` imports nothing from ftdoctor.references.
REFERENCE_TASKS = (
    "sequence-classification",
    "token-classification",
    "masked-lm",
    "causal-lm",
    "translation",
    "summarization",
    "question-answering",
    "multiple-choice",
)


def _parse_size(text: str) -> int:
    """Bytes of "24GiB", "80GB" or a GPU name such as "A100-80GB"."""
    return _parse_gpu_memory(text)[0]


def _parse_gpu_memory(text: str) -> tuple[int, str | None]:
    """(bytes, GPU name or None) for --gpu-memory: the name is shown in the memory stage's report."""
    from ftdoctor.entry.settings import parse_gpu_memory

    try:
        return parse_gpu_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    """A timeout on the command line, held to the same rule as in pyproject.toml."""
    from ftdoctor.entry.settings import ConfigError, parse_seconds

    try:
        return parse_seconds(text, "seconds", "the command line")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}") from None


def _ranks(text: str) -> int:
    from ftdoctor.entry.settings import ConfigError, parse_nproc

    try:
        return parse_nproc(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"must be a number of ranks from 1 to 8, not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ftdoctor",
        description="Walk a transformers fine-tuning pipeline stage by "
        "stage (" + " ".join(DEFAULT_STAGES) + ") and report every failure with its fix.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser(
        "check",
        help="run SCRIPT up to trainer.train() and walk the pipeline it built",
        description="Run SCRIPT as `python SCRIPT ARGS` would, stop when training starts, walk the "
        "captured pipeline. Without SCRIPT, check each of the `scripts` configured in "
        "[tool.ftdoctor] of pyproject.toml. Exit 0 ok, 1 findings of severity error, "
        "2 ftdoctor could not run.",
    )
    c.add_argument(
        "script",
        nargs="?",
        help="the training script (default: the scripts configured in [tool.ftdoctor] of pyproject.toml)",
    )
    c.epilog = "Arguments after -- go to the script: ftdoctor check train.py --format json -- --epochs 3"
    _walk_options(c)

    d = sub.add_parser(
        "demo",
        help="walk the bundled broken MNLI pipeline of the Hugging Face course (offline; exits 1: it has four bugs)",
    )
    _walk_options(d)

    e = sub.add_parser("explain", help="print a finding's page: what, why, broken and fixed example (as docs/rules)")
    e.add_argument("code", nargs="?", help="a finding code (FTD101) or name (num-labels-mismatch)")
    e.add_argument("--all", action="store_true", help="list every finding")

    rl = sub.add_parser("rules", help="list the rules: code, name, stage, severity, fix safety, version added")
    rl.add_argument("--stage", choices=STAGES, help="only the rules of this stage")
    rl.add_argument("--severity", choices=SEVERITIES, help="only the rules of this severity")
    rl.add_argument("--json", action="store_true", help="print the rules as a JSON list (with their page's url)")
    rl.add_argument(
        "--write-pages",
        metavar="DIR",
        help="write one Markdown page per rule and their index into DIR "
        "(docs/rules in ftdoctor's repository), removing stale ones",
    )

    r = sub.add_parser("reference", help="reference pipelines per task: list, show the script, run it (offline)")
    rsub = r.add_subparsers(dest="reference_command", metavar="ACTION")
    rsub.add_parser("list", help="the tasks, with model family, collator and metric")
    show = rsub.add_parser("show", help="print the reference script of TASK (ftdoctor reference show TASK > ref.py)")
    show.add_argument("task", choices=REFERENCE_TASKS, metavar="TASK", help=" ".join(REFERENCE_TASKS))
    run = rsub.add_parser("run", help="train the reference of TASK on its fixture; print the metric before and after")
    run.add_argument(
        "task", nargs="+", choices=(*REFERENCE_TASKS, "all"), metavar="TASK", help=" ".join(REFERENCE_TASKS) + " or all"
    )
    run.add_argument("--verbose", action="store_true", help="show what the script prints while it trains")
    return p


def _walk_options(c: argparse.ArgumentParser) -> None:
    out = c.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=FORMATS,
        help="text (default), json (schema ftdoctor.report/1), github "
        "(workflow annotations), sarif (2.1.0), junit (XML)",
    )
    out.add_argument("--json", action="store_true", help="the same as --format json")
    out.add_argument("--html", metavar="FILE", help="also write the text report as an HTML page")
    out.add_argument("--traceback", action="store_true", help="also show raw tracebacks")
    out.add_argument("--show-script-output", action="store_true", help="show what the script prints while it runs")
    w = c.add_argument_group("walk (these override [tool.ftdoctor] in pyproject.toml)")
    w.add_argument("--stages", help="comma-separated stages to run (default: all)")
    w.add_argument(
        "--ignore",
        action="append",
        metavar="CODE[,CODE]",
        help="leave these findings out of the report and the exit code (repeatable; adds to the configured `ignore`)",
    )
    w.add_argument(
        "--timeout", type=_seconds, help=f"seconds the script may take to reach training (default {DEFAULT_TIMEOUT:g})"
    )
    w.add_argument(
        "--walk-timeout",
        type=_seconds,
        help=f"seconds the walk may take once training is reached (default {DEFAULT_WALK_TIMEOUT:g})",
    )
    w.add_argument(
        "--offline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="set HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, HF_EVALUATE_OFFLINE=1 for the script",
    )
    w.add_argument("--budget", choices=("fast", "full"), help="how much the walk may spend (rows, steps)")
    w.add_argument(
        "--nproc",
        type=_ranks,
        metavar="N",
        help="launch the script on N ranks with torchrun (gloo on the CPU, 127.0.0.1) and add the `distributed` stage",
    )
    w.add_argument(
        "--collective-timeout",
        type=_seconds,
        metavar="S",
        help="with --nproc: seconds a collective may wait for the other ranks (default 30)",
    )
    w.add_argument(
        "--gpu-memory",
        type=_parse_gpu_memory,
        metavar="SIZE|GPU",
        help="plan memory for this device (24GiB, 80GB or a GPU name such as A100-80GB) when no GPU is present",
    )


DEMO_PIPELINE = "course_mnli_broken.py"
# The runner's own defaults, repeated here so `ftdoctor --help` does not import it.
DEFAULT_TIMEOUT, DEFAULT_WALK_TIMEOUT = 600.0, 1800.0


def demo_script() -> str:
    """The bundled copy of the course's broken MNLI pipeline (shipped in the wheel with its fixtures)."""
    import ftdoctor.fixtures

    return os.path.join(os.path.dirname(ftdoctor.fixtures.__file__), "pipelines", DEMO_PIPELINE)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # a reader that went away (`ftdoctor explain X | head -1`) is not an error
        _stdout_gone()
        return EXIT_OK
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP during a check (parent.Interrupted), outside a walk
        import signal

        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"ftdoctor: {_stopped_by(signum)}.", file=sys.stderr)
        return 128 + signum
    except Exception as exc:  # ftdoctor's own failure: said as such, with where the traceback went
        return _internal_error(exc)


def _internal_error(exc: BaseException) -> int:
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    with tempfile.NamedTemporaryFile("w", prefix="ftdoctor-crash-", suffix=".txt", delete=False) as fh:
        fh.write(text)
    from ftdoctor.core.untrusted import inline

    print(
        f"ftdoctor: internal error (a bug in ftdoctor, not in your script): {type(exc).__name__}: {inline(exc)}\n"
        f"  the traceback is in {fh.name}; please attach it to a bug report.",
        file=sys.stderr,
    )
    return EXIT_HARNESS


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:  # everything after -- belongs to the user's script
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1 :]
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        hint = " (arguments for your script go after --)" if args.command == "check" else ""
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    args.script_args = script_args
    if args.command is None:
        parser.print_help()
        return EXIT_HARNESS
    if args.command == "explain":
        return _explain(args)
    if args.command == "rules":
        return _rules(args)
    if args.command == "reference":
        return _reference(args, parser)
    if args.command == "demo":
        args.script, args.script_args = demo_script(), []
        return _check(args, demo=True)
    return _check(args)


EXIT_INTERRUPTED = 130  # 128 + the signal: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP


def _stopped_by(signum: int) -> str:
    import signal

    return {
        signal.SIGINT: "interrupted (Ctrl-C)",
        getattr(signal, "SIGTERM", -1): "terminated (SIGTERM)",
        getattr(signal, "SIGHUP", -2): "hung up (SIGHUP)",
    }.get(signum, f"stopped by signal {signum}")


def _say(message: str, tail: str = "", limit: int | None = None) -> None:
    """A message on stderr: quoted text in it shown inert, a script's last lines under it, both bounded."""
    from ftdoctor.core.untrusted import DETAIL, visible
    from ftdoctor.core.untrusted import tail as last_lines

    print(f"ftdoctor: {visible(message, limit or DETAIL)}", file=sys.stderr)
    if tail:
        print(
            "last lines the script printed:\n" + "\n".join("  | " + line for line in last_lines(tail).split("\n")),
            file=sys.stderr,
        )


def _out(text: str) -> None:
    """Print to stdout; when the reader has gone away (`| head`), the rest is dropped quietly."""
    if sys.stdout is None:  # started with its standard output closed (`>&-`)
        return
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not fail again (Python's documented recipe).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _format(args) -> str | None:
    if args.json and args.format not in (None, "json"):
        return None
    return "json" if args.json else (args.format or "text")


def _check(args, demo: bool = False) -> int:
    from ftdoctor.process.parent import stop_signals

    # SIGTERM and SIGHUP stop a check the way Ctrl-C does, also between scripts and while the report is printed.
    with stop_signals():
        return _check_all(args, demo)


def _check_all(args, demo: bool) -> int:
    from ftdoctor.entry.settings import ConfigError, Settings, load, output_problem, parse_codes, parse_stages
    from ftdoctor.output.suppression import Policy
    from ftdoctor.process.parent import script_problem

    fmt = _format(args)
    if fmt is None:
        print(f"ftdoctor: --json and --format {args.format} ask for two formats; choose one", file=sys.stderr)
        return EXIT_HARNESS
    shown = _display(args.script) if args.script else None
    try:
        # The demo is the same broken pipeline everywhere: a project's settings do not apply to it.
        settings = Settings() if demo else load()
        ignored = [code for value in args.ignore or [] for code in parse_codes(value, where="--ignore")]
        settings = settings.override(
            stages=parse_stages(args.stages) if args.stages else None,
            timeout=args.timeout,
            walk_timeout=args.walk_timeout,
            offline=args.offline,
            budget=args.budget,
            gpu_memory=args.gpu_memory,
            nproc=args.nproc,
        )
    except ConfigError as exc:
        return _refuse(shown, str(exc), fmt, args)
    policy = Policy.from_lists(settings.ignore, ignored, settings.severity)
    if demo:
        settings.offline = True if args.offline is None else args.offline
    if args.script:
        targets = [(args.script, list(args.script_args or []))]
    elif args.script_args:
        return _refuse(None, "arguments after -- need a SCRIPT to go to", fmt, args)
    elif settings.scripts:
        targets = settings.scripts
    else:
        where = f" ({settings.path} has no `scripts`)" if settings.path else ""
        return _refuse(
            None, f"no SCRIPT given and no `scripts` configured in [tool.ftdoctor] of pyproject.toml{where}", fmt, args
        )
    # Everything that can be judged before a script runs is judged now, not after a walk of minutes.
    for script, _ in targets:
        problem = script_problem(script)
        if problem:
            return _refuse(_display(script), problem, fmt, args)
    if args.html:
        problem = output_problem(args.html, targets)
        if problem:
            return _refuse(shown, problem, fmt, args, html=False)
    if settings.offline:
        from ftdoctor.core.env import set_offline

        set_offline()
    outcomes = []
    for script, script_args in targets:
        outcome = _check_one(script, script_args, args, settings, policy, fmt)
        outcomes.append(outcome)
        if outcome.code > 128:  # stopped by a signal: the other scripts are not started
            break
    return _emit(outcomes, fmt, args)


def _refuse(shown: str | None, message: str, fmt: str, args, html: bool = True) -> int:
    """ftdoctor cannot start: say why on stderr, and still print the document of the chosen format."""
    from ftdoctor.output.document import Outcome

    _say(message)
    return _emit([Outcome(shown, None, message, EXIT_HARNESS)], fmt, args, html=html)


def _display(path: str) -> str:
    from ftdoctor.core.source import display_path

    return display_path(path)


def _check_one(script: str, script_args: list[str], args, settings, policy, fmt: str):
    """Check one script; its outcome, with the text report already printed for the text format."""
    from ftdoctor.core.report import INTERNAL_ERROR
    from ftdoctor.core.untrusted import BLOCK, NAME, block, inline
    from ftdoctor.output.document import Outcome
    from ftdoctor.output.suppression import apply_policy
    from ftdoctor.process.parent import Interrupted, check_script
    from ftdoctor.process.result import HarnessError

    shown = _display(script)

    def failed(message: str, tail: str = "", code: int = EXIT_HARNESS, report=None, limit=None) -> Outcome:
        _say(message, tail, limit)
        return Outcome(shown, report, message, code)

    err = _stderr_console()
    status = None
    if fmt == "text" and err.is_terminal and not args.show_script_output:
        from rich.markup import escape

        status = err.status(f"running {escape(inline(os.path.basename(script), NAME))} up to trainer.train() ...")
        status.start()

    def progress(event: str, value: str | None = None) -> None:
        if status is None:
            if event == "input":
                print(value or "", end="", file=sys.stderr, flush=True)
            return
        if event == "input":  # the script asks for input: show its prompt instead of the spinner
            status.stop()
            err.print(value or "", end="", markup=False, highlight=False)
            return
        from rich.markup import escape

        status.start()
        if event == "captured":
            status.update("training reached: walking the pipeline ...")
        elif event == "stage":
            status.update(f"stage [bold]{escape(inline(value or '', NAME))}[/bold] ...")
        elif event == "step":  # "overfit: trial 2 at lr=0.001, step 12/30 · about 8 s left"
            stage, _, text = (value or "").partition(": ")
            status.update(f"stage [bold]{escape(inline(stage, NAME))}[/bold]: {escape(inline(text))}")

    try:
        result = check_script(
            script,
            script_args,
            timeout=settings.timeout,
            walk_timeout=settings.walk_timeout,
            stages=settings.stages,
            progress=progress,
            show_output=args.show_script_output,
            options=settings.options(),
            nproc=settings.nproc or 1,
            collective_timeout=args.collective_timeout,
        )
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (Interrupted): the child and its folder are gone
        if status is not None:
            status.stop()
        signum = exc.signum if isinstance(exc, Interrupted) else EXIT_INTERRUPTED - 128
        return failed(f"{_stopped_by(signum)}; the script's process was stopped.", code=128 + signum)
    except HarnessError as exc:
        return failed(str(exc))
    except Exception:  # a failure inside ftdoctor itself is never reported as the user's bug
        import traceback

        return failed(INTERNAL_ERROR + ":\n" + traceback.format_exc(), limit=BLOCK)
    finally:
        if status is not None:
            status.stop()
    if result.report is None:
        if args.traceback and result.traceback:
            print(block(result.traceback), file=sys.stderr)
        return failed(result.message or "no report", result.output)
    report = apply_policy(result.report, policy)
    if fmt == "text":
        from ftdoctor.output.terminal import print_report

        try:
            print_report(report, show_traceback=args.traceback)
        except BrokenPipeError:
            _stdout_gone()
        if args.traceback and result.traceback:
            print(block(result.traceback), file=sys.stderr)
    else:
        from ftdoctor.core.report import CHECK_ERROR

        for title, errors in ((CHECK_ERROR, report.check_errors), (INTERNAL_ERROR, report.internal_errors)):
            for error in errors:
                print(f"ftdoctor: {title}:\n{block(error)}", file=sys.stderr)
    if result.outcome == "timeout":  # the walk stopped part way (--walk-timeout): the report has what finished
        return failed(result.message, report=report)
    return Outcome(report.script or shown, report, None, exit_code(report))


def exit_code(report) -> int:
    """0 clean, 1 error findings. 2 when no stage could run at all because ftdoctor failed, or when a check of the
    project's own could not run (its file is at fault, as with a bad argument). A check of ftdoctor's that crashed
    is reported as ftdoctor's, and the other stages' findings decide."""
    if (report.internal_errors and not report.walked) or report.check_errors:
        return EXIT_HARNESS
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _emit(outcomes, fmt: str, args, html: bool = True) -> int:
    """Print the machine formats (the text report is printed as each script finishes), write --html, and return
    the worst exit code."""
    from ftdoctor.output import document, github, junit, sarif

    text = {"json": document.to_json, "github": github.to_github, "sarif": sarif.to_sarif, "junit": junit.to_junit}.get(
        fmt
    )
    if text is not None:
        doc = text(outcomes)
        if doc:
            _out(doc)
    code = max((o.code for o in outcomes), default=EXIT_OK)
    if args.html and html:
        code = max(code, _write_html(outcomes, args))
    return code


def _write_html(outcomes, args) -> int:
    from ftdoctor.entry.settings import output_problem
    from ftdoctor.output import html

    # Judged again: the script ran since, and may have made the file.
    problem = output_problem(args.html, [(o.script, []) for o in outcomes if o.script and os.path.isfile(o.script)])
    try:
        if problem:
            raise OSError(problem)
        html.write_html(outcomes, args.html, show_traceback=args.traceback)
    except OSError as exc:
        _say(f"cannot write {args.html}: {exc}")
        return EXIT_HARNESS
    return EXIT_OK


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _reference(args, parser) -> int:
    from ftdoctor import references

    if args.reference_command == "list":
        return references.main_list()
    if args.reference_command == "show":
        return references.main_show(args.task)
    if args.reference_command == "run":
        tasks = list(references.TASKS) if "all" in args.task else list(dict.fromkeys(args.task))
        return references.main_run(tasks, verbose=args.verbose)
    parser.parse_args(["reference", "--help"])
    return EXIT_HARNESS


def _explain(args) -> int:
    from ftdoctor.output.rule_pages import find_rule, rule_page, rules

    if args.all or not args.code:
        every = rules()
        n, s = (max(len(getattr(r, k)) for r in every) for k in ("name", "stage"))
        _out("\n".join(f"{r.code}  {r.name:<{n}} {r.stage:<{s}} {r.severity:<8} {r.title}" for r in every))
        return EXIT_OK
    r = find_rule(args.code)
    if r is None:
        print(f"ftdoctor: no finding {args.code!r}; `ftdoctor explain --all` lists them", file=sys.stderr)
        return EXIT_HARNESS
    _out(rule_page(r).rstrip("\n"))
    return EXIT_OK


def _rules(args) -> int:
    from ftdoctor.output.rule_pages import rule_dict, rules, rules_table, write_pages

    if args.write_pages:
        try:
            written, removed = write_pages(args.write_pages)
        except OSError as exc:
            print(f"ftdoctor: cannot write the rule pages into {args.write_pages}: {exc}", file=sys.stderr)
            return EXIT_HARNESS
        _out(
            f"{args.write_pages}: {len(written)} written, {len(removed)} removed"
            + "".join(f"\n  wrote {name}" for name in written)
            + "".join(f"\n  removed {name}" for name in removed)
        )
        return EXIT_OK
    selected = rules(stage=args.stage, severity=args.severity)
    if args.json:
        import json

        _out(json.dumps([rule_dict(r) for r in selected], indent=2))
    else:
        _out(rules_table(selected))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
