"""pytest plugin: ``pytest --ftdoctor`` turns each configured training script into one test item per stage.

Without ``--ftdoctor`` the plugin adds its options and nothing else: no item is collected, no import is paid.
"""

from __future__ import annotations

import os
import signal
import warnings
from typing import Any

import pytest

from ftdoctor.core.stages import default_stages
from ftdoctor.core.untrusted import BLOCK, NAME, TITLE, inline, visible


class FtDoctorWarning(UserWarning):
    """A warning finding of the walk, shown in pytest's warnings summary."""


def pytest_addoption(parser):
    group = parser.getgroup("ftdoctor", "fine-tuning pipeline checks (ftdoctor)")
    group.addoption(
        "--ftdoctor",
        action="store_true",
        default=False,
        help="walk the configured training scripts, one test item per stage",
    )
    group.addoption(
        "--ftdoctor-script",
        action="append",
        default=[],
        metavar="'PATH [ARGS...]'",
        help="a training script to walk, with its arguments (repeatable; adds to the ini key ftdoctor_scripts)",
    )
    group.addoption(
        "--ftdoctor-stages", default=None, metavar="STAGES", help="comma-separated stages to walk (default: all)"
    )
    group.addoption(
        "--ftdoctor-ignore",
        action="append",
        default=[],
        metavar="CODE[,CODE]",
        help="leave these findings out (repeatable; adds to ftdoctor_ignore)",
    )
    group.addoption(
        "--ftdoctor-gpu-memory",
        default=None,
        metavar="SIZE",
        help="plan the memory stage for this device, e.g. 24GiB or A100-80GB",
    )
    # The ini keys mirror [tool.ftdoctor] of pyproject.toml (ftdoctor_<key>); a key set here overrides the table.
    parser.addini(
        "ftdoctor_scripts",
        type="linelist",
        default=None,
        help="training scripts (with arguments) that `pytest --ftdoctor` walks, one per line",
    )
    parser.addini("ftdoctor_stages", default=None, help="comma-separated stages to walk (default: all)")
    parser.addini("ftdoctor_ignore", type="args", default=None, help="finding codes to leave out")
    parser.addini(
        "ftdoctor_severity",
        type="linelist",
        default=None,
        help="per-code severities, one `CODE = error|warning|info` per line",
    )
    parser.addini(
        "ftdoctor_timeout", default=None, help="seconds a script may take to reach trainer.train() (default 600)"
    )
    parser.addini("ftdoctor_walk_timeout", default=None, help="seconds the walk may take (default 1800)")
    parser.addini(
        "ftdoctor_offline",
        type="bool",
        default=None,
        help="run the scripts with HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, HF_EVALUATE_OFFLINE=1",
    )
    parser.addini("ftdoctor_budget", default=None, help="fast or full")
    parser.addini("ftdoctor_gpu_memory", default=None, help="plan memory for this device (24GiB, A100-80GB)")
    parser.addini(
        "ftdoctor_nproc",
        default=None,
        help="ranks to launch each script on with torchrun (adds the `distributed` stage)",
    )


def _ini(config, name: str):
    value = config.getini(name)
    return None if value is None or value == "" or value == [] else value


def settings(config):
    """[tool.ftdoctor] of pyproject.toml, overridden by the ini keys, overridden by the command line."""
    from ftdoctor.entry.settings import (
        ConfigError,
        load,
        parse_budget,
        parse_codes,
        parse_gpu_memory,
        parse_nproc,
        parse_scripts,
        parse_seconds,
        parse_severity,
        parse_stages,
    )

    try:
        s = load(str(config.invocation_params.dir))
        where = "the pytest configuration"
        scripts = _ini(config, "ftdoctor_scripts")
        severity = _ini(config, "ftdoctor_severity")
        ini = dict(
            scripts=parse_scripts(scripts, str(config.rootpath)) if scripts else None,
            stages=parse_stages(_ini(config, "ftdoctor_stages"), where) if _ini(config, "ftdoctor_stages") else None,
            ignore=parse_codes(_ini(config, "ftdoctor_ignore"), "ftdoctor_ignore", where)
            if _ini(config, "ftdoctor_ignore")
            else None,
            severity=parse_severity(dict(_split_pair(line) for line in severity), where) if severity else None,
            offline=_ini(config, "ftdoctor_offline"),
            budget=parse_budget(_ini(config, "ftdoctor_budget"), where) if _ini(config, "ftdoctor_budget") else None,
            gpu_memory=parse_gpu_memory(_ini(config, "ftdoctor_gpu_memory"))
            if _ini(config, "ftdoctor_gpu_memory")
            else None,
            nproc=parse_nproc(_ini(config, "ftdoctor_nproc"), where) if _ini(config, "ftdoctor_nproc") else None,
        )
        for key in ("timeout", "walk_timeout"):
            value = _ini(config, f"ftdoctor_{key}")
            ini[key] = parse_seconds(value, f"ftdoctor_{key}", where) if value is not None else None
        s = s.override(**ini)
        cli_scripts = parse_scripts(config.getoption("ftdoctor_script") or [], str(config.rootpath))
        stages = config.getoption("ftdoctor_stages")
        gpu = config.getoption("ftdoctor_gpu_memory")
        s = s.override(
            scripts=s.scripts + cli_scripts if cli_scripts else None,
            stages=parse_stages(stages) if stages else None,
            gpu_memory=parse_gpu_memory(gpu) if gpu else None,
        )
        cli_ignore = [c for v in config.getoption("ftdoctor_ignore") or [] for c in parse_codes(v)]
    except (ConfigError, ValueError) as exc:
        raise pytest.UsageError(f"ftdoctor: {inline(exc)}") from None
    from ftdoctor.process.parent import script_problem

    # A script that is missing, a folder, or not Python is a usage error, as for `ftdoctor check`.
    for script, _ in s.scripts:
        problem = script_problem(script)
        if problem:
            raise pytest.UsageError(f"ftdoctor: {problem}")
    return s, cli_ignore


def _split_pair(line: str) -> tuple[str, str]:
    code, _, level = line.partition("=")
    return code.strip(), level.strip().strip("\"'")


def _scripts(config) -> list[tuple[str, list[str]]]:
    return config._ftdoctor_settings.scripts


class _Walks:
    """The walk of each script, run once per session and shared by its stage items and the fixtures."""

    def __init__(self, config):
        self.config = config
        self.results: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._artifacts: str | None = None

    def get(self, script: str, args: list[str]):
        """Each script runs in a child process of its own (nothing leaks between scripts: working directory,
        imported modules); the report and what the fixtures need come back as files."""
        key = (script, tuple(args))
        if key not in self.results:
            import tempfile

            from ftdoctor.output.suppression import apply_policy
            from ftdoctor.process.parent import check_script
            from ftdoctor.process.result import HarnessError

            if self._artifacts is None:
                self._artifacts = tempfile.mkdtemp(prefix="ftdoctor-pytest-")
            s = self.config._ftdoctor_settings
            from ftdoctor.process.parent import Interrupted

            try:
                with _offline(s.offline):
                    result = check_script(
                        script,
                        args,
                        timeout=s.timeout,
                        walk_timeout=s.walk_timeout,
                        stages=s.stages,
                        options=s.options(),
                        check_dirs=_check_dirs(self.config, script),
                        artifacts_dir=os.path.join(self._artifacts, str(len(self.results))),
                        nproc=s.nproc or 1,
                    )
                if result.report is not None:
                    apply_policy(result.report, self.config._ftdoctor_policy)
                self.results[key] = result
            except HarnessError as exc:
                self.results[key] = exc
            except Interrupted as exc:
                if exc.signum == signal.SIGINT:
                    raise
                # SIGTERM or SIGHUP: the child and its folder are gone; end the session as that signal asks.
                pytest.exit(
                    f"ftdoctor: stopped by {signal.Signals(exc.signum).name} while walking {script}; the "
                    "script's process was stopped",
                    returncode=exc.exit_code,
                )
        return self.results[key]

    def close(self) -> None:
        if self._artifacts is not None:
            import shutil

            shutil.rmtree(self._artifacts, ignore_errors=True)


def _check_dirs(config, script):
    from ftdoctor.core.registry import default_check_dirs

    return default_check_dirs(os.path.dirname(script), str(config.rootpath))


class _offline:
    """The Hugging Face offline variables for the script's process only (the test session keeps its own)."""

    def __init__(self, on: bool | None):
        self.on = bool(on)

    def __enter__(self):
        from ftdoctor.core.env import OFFLINE_VARS

        self.saved = {v: os.environ.get(v) for v in OFFLINE_VARS} if self.on else {}
        for var in self.saved:
            os.environ[var] = "1"

    def __exit__(self, *exc):
        for var, value in self.saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def pytest_configure(config):
    if config.getoption("ftdoctor"):
        from ftdoctor.output.suppression import Policy

        s, cli_ignore = settings(config)
        config._ftdoctor_settings = s
        config._ftdoctor_policy = Policy.from_lists(s.ignore, cli_ignore, s.severity)
        config._ftdoctor_walks = _Walks(config)
        config.addinivalue_line("markers", "ftdoctor: a stage of an ftdoctor pipeline walk")


def pytest_unconfigure(config):
    walks = getattr(config, "_ftdoctor_walks", None)
    if walks is not None:
        walks.close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Add the pipeline items before -k/-m selection runs, so they filter like any test."""
    if not config.getoption("ftdoctor"):
        return
    for script, args in _scripts(config):
        collector = PipelineCollector.from_parent(session, path=_path(script), script=script, script_args=args)
        items.extend(collector.collect())


def _path(script):
    from pathlib import Path

    return Path(script)


class PipelineCollector(pytest.File):
    """One training script; its items are the stages."""

    def __init__(self, *, script: str, script_args: list[str], **kw):
        super().__init__(**kw)
        self.script = script
        self.script_args = script_args

    def collect(self):
        settings = self.config._ftdoctor_settings
        for stage in settings.stages or default_stages(settings.nproc or 1):
            yield StageItem.from_parent(self, name=stage, stage=stage)


class StageFailed(Exception):
    def __init__(self, stage_result, report):
        super().__init__(stage_result.stage)
        self.stage_result = stage_result
        self.report = report


class HarnessFailed(Exception):
    pass


def _skip(reason: str):
    # Reported at the item (the script), not at this line of the plugin.
    raise pytest.skip.Exception(reason, _use_item_location=True)


class StageItem(pytest.Item):
    """One stage of one script's walk: fails with the findings and their fixes, not a traceback."""

    def __init__(self, *, stage: str, **kw):
        super().__init__(**kw)
        self.stage = stage
        self.add_marker("ftdoctor")

    def runtest(self):
        from ftdoctor.core.report import CHECK_ERROR, INTERNAL_ERROR

        result = self.config._ftdoctor_walks.get(self.parent.script, self.parent.script_args)
        if isinstance(result, Exception):
            raise HarnessFailed(str(result))
        if result.report is None:
            if self.stage == "setup":
                raise HarnessFailed(result.message)
            _skip(f"no pipeline was captured: {inline(result.message)}")
        report = result.report
        crashed = {name for s in report.stages for name in s.crashed}

        def of_crashed(error: str, names) -> bool:
            return any(f"check {name} " in error for name in names)

        # Errors of no stage (checks that failed to load, a broken contract, the capture) go to the setup item, a
        # crashed check to its own stage's item; the other stages keep their verdicts.
        if self.stage == "setup":
            for title, errors in ((CHECK_ERROR, report.check_errors), (INTERNAL_ERROR, report.internal_errors)):
                general = [e for e in errors if not of_crashed(e, crashed)]
                if general:
                    raise HarnessFailed(f"{title}:\n" + "\n".join(general))
        if result.stopped_at is not None and self.stage == result.stopped_at:  # --walk-timeout, in this stage
            raise HarnessFailed(result.message)
        st = report.stage(self.stage)
        if st is None:
            if result.stopped_at is not None:
                _skip(
                    f"not reached: the walk was stopped in the {inline(result.stopped_at, NAME)} stage (--walk-timeout)"
                )
            _skip(f"stage {self.stage} was not run")
        if st.status == "skip":
            _skip(inline(st.reason or "skipped"))
        if st.status == "fail":
            raise StageFailed(st, report)
        if st.crashed:  # no error finding here, but the stage was not judged whole
            for title, errors in ((CHECK_ERROR, report.check_errors), (INTERNAL_ERROR, report.internal_errors)):
                mine = [e for e in errors if of_crashed(e, st.crashed)]
                if mine:
                    raise HarnessFailed(f"{title}:\n" + "\n".join(mine))
        for f in st.findings:
            if f.severity == "warning":
                warnings.warn(
                    FtDoctorWarning(
                        f"{self.nodeid} {inline(f.code, NAME)} {inline(f.title, TITLE)}: "
                        f"{inline(f.detail)} Fix: {inline(f.fix)}"
                    ),
                    stacklevel=2,
                )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, StageFailed):
            return format_stage(excinfo.value.stage_result)
        if isinstance(excinfo.value, HarnessFailed):
            return f"ftdoctor could not walk {inline(self.parent.script, NAME)}: {visible(str(excinfo.value), BLOCK)}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"ftdoctor {self.stage}: {inline(os.path.basename(self.parent.script), NAME)}"


def format_stage(st) -> str:
    """A failed stage as a person should read it: each finding, the user's line and the fix."""
    from ftdoctor.output.text import format_stage as text

    return text(st)


# -- fixtures for a team's own pytest checks -------------------------------------------------------------------


def pytest_generate_tests(metafunc):
    """A test that uses an ftdoctor_* fixture runs once per configured script."""
    if "ftdoctor_script" not in metafunc.fixturenames or not metafunc.config.getoption("ftdoctor"):
        return
    scripts = _scripts(metafunc.config)
    if scripts:
        metafunc.parametrize("ftdoctor_script", scripts, indirect=True, ids=[os.path.basename(s) for s, _ in scripts])


@pytest.fixture
def ftdoctor_script(request):
    if not request.config.getoption("ftdoctor"):
        pytest.skip("needs --ftdoctor")
    if not hasattr(request, "param"):
        pytest.skip("no training script configured (--ftdoctor-script or the ftdoctor_scripts ini key)")
    return request.param


def _result(request, ftdoctor_script):
    script, args = ftdoctor_script
    result = request.config._ftdoctor_walks.get(script, args)
    if isinstance(result, Exception) or result.report is None:
        pytest.skip(f"no pipeline was captured from {script}")
    return result


@pytest.fixture
def ftdoctor_report(request, ftdoctor_script):
    return _result(request, ftdoctor_script).report


def _artifact(request, ftdoctor_script, name: str, what: str):
    """A value the script's child process saved for the fixtures (it ran in another process)."""
    result = _result(request, ftdoctor_script)
    path = result.artifacts.get(name)
    if not path or not os.path.isfile(path):
        pytest.skip(f"the walk has no `{what}` for this pipeline")
    if path.endswith(".pt"):
        import torch

        return torch.load(path, weights_only=False)
    import pickle

    with open(path, "rb") as fh:
        return pickle.load(fh)


@pytest.fixture
def ftdoctor_pipeline(request, ftdoctor_script):
    """What crosses processes of the captured pipeline: task, tokenizer, args, collator and model (when they
    pickle). For the live objects, write a check (`ftdoctor.stage_check`): it runs in the script's process."""
    return _artifact(request, ftdoctor_script, "pipeline", "pipeline")


@pytest.fixture
def ftdoctor_trainer(request, ftdoctor_script):
    pytest.skip(
        "the Trainer lives in the script's own process and cannot be handed to pytest: write a check "
        "with `ftdoctor.stage_check` (it receives `trainer`) in ftdoctor_checks/"
    )


@pytest.fixture
def ftdoctor_batch(request, ftdoctor_script):
    """The first training batch, built by the pipeline's own collator."""
    return _artifact(request, ftdoctor_script, "batch", "batch")


@pytest.fixture
def ftdoctor_train_dataset(request, ftdoctor_script):
    """The training dataset as walked (the tokenized stand-in when the raw one was passed)."""
    return _artifact(request, ftdoctor_script, "train_dataset", "train_dataset")
