"""The ftdoctor command. Heavy imports (torch, transformers) happen only inside the commands that need them."""

from __future__ import annotations

import argparse
import os
import re
import sys

from .findings import DEFAULT_STAGES, STAGES

EXIT_OK, EXIT_FINDINGS, EXIT_HARNESS = 0, 1, 2
# The reference tasks, spelled out here so `ftdoctor --help` imports nothing from ftdoctor.references.
REFERENCE_TASKS = ("sequence-classification", "token-classification", "masked-lm", "causal-lm", "translation",
                   "summarization", "question-answering", "multiple-choice")


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B?|B)?\s*", text, re.I)
    if not m:
        known = _known_gpu(text)
        if known:
            return known
        raise argparse.ArgumentTypeError(f"not a size or a known GPU name: {text!r} (e.g. 24GiB, 80GB, A100-80GB)")
    value, unit = float(m.group(1)), (m.group(2) or "B").upper()
    scale = {"B": 1, "K": 1e3, "KB": 1e3, "KIB": 2**10, "M": 1e6, "MB": 1e6, "MIB": 2**20, "G": 2**30, "GB": 1e9,
             "GIB": 2**30, "T": 2**40, "TB": 1e12, "TIB": 2**40}[unit]
    return int(value * scale)


_GPUS = {"t4": 15, "v100": 16, "v100-32gb": 32, "a10": 24, "a10g": 24, "l4": 24, "rtx3090": 24, "rtx4090": 24,
         "a100": 40, "a100-40gb": 40, "a100-80gb": 80, "h100": 80, "h100-80gb": 80, "h200": 141, "l40s": 48}


def _known_gpu(name: str) -> int | None:
    gib = _GPUS.get(name.lower().replace(" ", "").replace("nvidia", ""))
    return int(gib * 2**30) if gib else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ftdoctor", description="Walk a transformers fine-tuning pipeline stage by "
                                "stage (" + " ".join(DEFAULT_STAGES) + ") and report every failure with its fix.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("check", help="run SCRIPT up to trainer.train() and walk the pipeline it built",
                       description="Run SCRIPT as `python SCRIPT ARGS` would, stop when training starts, walk the "
                                   "captured pipeline. Exit 0 ok, 1 findings of severity error, 2 ftdoctor could not run.")
    c.add_argument("script", help="the training script")
    c.epilog = "Arguments after -- go to the script: ftdoctor check train.py --json -- --epochs 3"
    _walk_options(c)

    d = sub.add_parser("demo", help="walk the bundled broken MNLI pipeline of the Hugging Face course (offline)")
    _walk_options(d)

    e = sub.add_parser("explain", help="explain a finding: what, why, broken and fixed example")
    e.add_argument("code", nargs="?", help="a finding code (FTD101) or name (num-labels-mismatch)")
    e.add_argument("--all", action="store_true", help="list every finding")
    e.add_argument("--markdown", action="store_true", help="print the catalog as Markdown (the README's catalog)")

    r = sub.add_parser("reference", help="reference pipelines per task: list, show the script, run it (offline)")
    rsub = r.add_subparsers(dest="reference_command", metavar="ACTION")
    rsub.add_parser("list", help="the tasks, with model family, collator and metric")
    show = rsub.add_parser("show", help="print the reference script of TASK (ftdoctor reference show TASK > ref.py)")
    show.add_argument("task", choices=REFERENCE_TASKS, metavar="TASK", help=" ".join(REFERENCE_TASKS))
    run = rsub.add_parser("run", help="train the reference of TASK on its fixture; print the metric before and after")
    run.add_argument("task", nargs="+", choices=(*REFERENCE_TASKS, "all"), metavar="TASK",
                     help=" ".join(REFERENCE_TASKS) + " or all")
    run.add_argument("--verbose", action="store_true", help="show what the script prints while it trains")
    return p


def _walk_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--json", action="store_true", help="print the JSON report (schema ftdoctor.report/1) on stdout")
    c.add_argument("--stages", help="comma-separated stages to run (default: all)")
    c.add_argument("--timeout", type=float, default=600.0, help="seconds the script may take to reach training "
                                                               "(default 600)")
    c.add_argument("--walk-timeout", type=float, default=1800.0, help="seconds the walk may take once training "
                                                                      "is reached (default 1800)")
    c.add_argument("--offline", action="store_true", help="set HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, "
                                                          "HF_EVALUATE_OFFLINE=1 for the script")
    c.add_argument("--gpu-memory", type=_parse_size, help="plan memory for this device (24GiB, 80GB or a GPU name "
                                                          "such as A100-80GB) when no GPU is present")
    c.add_argument("--traceback", action="store_true", help="also show raw tracebacks")
    c.add_argument("--show-script-output", action="store_true", help="show what the script prints while it runs")


DEMO_PIPELINE = "course_mnli_broken.py"


def demo_script() -> str:
    """The bundled copy of the course's broken MNLI pipeline (shipped in the wheel with its fixtures)."""
    import ftdoctor.fixtures

    return os.path.join(os.path.dirname(ftdoctor.fixtures.__file__), "pipelines", DEMO_PIPELINE)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:  # everything after -- belongs to the user's script
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
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
    if args.command == "reference":
        return _reference(args, parser)
    if args.command == "demo":
        args.script, args.script_args = demo_script(), []
        args.offline = True
    return _check(args)


EXIT_INTERRUPTED = 130


def _harness_exit(args, message: str, tail: str = "", code: int = EXIT_HARNESS) -> int:
    """ftdoctor could not produce a report: say why on stderr, and still print a JSON document with --json."""
    if args.json:
        import json

        print(json.dumps({"schema": "ftdoctor.report/1", "ok": False, "error": message, "script": args.script,
                          "stages": [], "summary": {"pass": 0, "warn": 0, "fail": 0, "skip": 0}}, indent=2))
    print(f"ftdoctor: {message}", file=sys.stderr)
    if tail:
        print("last lines the script printed:\n" + tail, file=sys.stderr)
    return code


def _check(args) -> int:
    from .api import HarnessError, check_script, set_offline
    from .runner import Interrupted

    script_args = list(args.script_args or [])
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    if stages:
        bad = [s for s in stages if s not in STAGES]
        if bad:
            return _harness_exit(args, f"unknown stage(s) {', '.join(bad)}; stages are: {' '.join(STAGES)}")
    if not os.path.isfile(args.script):
        return _harness_exit(args, f"no such script: {args.script}")
    if args.offline:
        set_offline()
    err = _stderr_console()
    status = None
    if not args.json and err.is_terminal and not args.show_script_output:
        status = err.status(f"running {os.path.basename(args.script)} up to trainer.train() ...")
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
        status.start()
        if event == "captured":
            status.update("training reached: walking the pipeline ...")
        elif event == "stage":
            status.update(f"stage [bold]{value}[/bold] ...")

    options = {"gpu_memory": args.gpu_memory} if args.gpu_memory else {}
    try:
        result = check_script(args.script, script_args, timeout=args.timeout, walk_timeout=args.walk_timeout,
                              stages=stages, progress=progress, show_output=args.show_script_output,
                              options=options)
    except (Interrupted, KeyboardInterrupt):
        if status is not None:
            status.stop()
        return _harness_exit(args, "interrupted (Ctrl-C); the script's process was stopped.", code=EXIT_INTERRUPTED)
    except HarnessError as exc:
        return _harness_exit(args, str(exc))
    except Exception:  # a failure inside ftdoctor itself is never reported as the user's bug
        import traceback

        return _harness_exit(args, "internal error (a bug in ftdoctor, not in your pipeline):\n"
                             + traceback.format_exc())
    finally:
        if status is not None:
            status.stop()
    if result.report is None:
        tail = "".join(result.output.splitlines(keepends=True)[-15:]).rstrip("\n")
        if args.traceback and result.traceback:
            print(result.traceback, file=sys.stderr)
        return _harness_exit(args, result.message or "no report", tail)
    report = result.report
    if args.json:
        print(report.to_json())
    else:
        from .render import render

        render(report, console=_stdout_console(), show_traceback=args.traceback)
        if args.traceback and result.traceback:
            print(result.traceback, file=sys.stderr)
    if report.internal_errors:
        if args.json:
            print("\n".join(report.internal_errors), file=sys.stderr)
        return EXIT_HARNESS
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _reference(args, parser) -> int:
    from . import references

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
    from .catalog import find_rule, markdown_catalog, rule_page, rules

    if args.markdown:
        print(markdown_catalog())
        return EXIT_OK
    if args.all or not args.code:
        for r in rules():
            print(f"{r.code}  {r.name:<32} {r.stage:<9} {r.severity:<8} {r.title}")
        return EXIT_OK
    r = find_rule(args.code)
    if r is None:
        print(f"ftdoctor: no finding {args.code!r}; `ftdoctor explain --all` lists them", file=sys.stderr)
        return EXIT_HARNESS
    print(rule_page(r))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
