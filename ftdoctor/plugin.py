"""pytest plugin: ``pytest --ftdoctor`` turns each configured training script into one test item per stage.

Without ``--ftdoctor`` the plugin adds its options and nothing else: no item is collected, no import is paid.
"""

from __future__ import annotations

import os
import shlex
import warnings
from typing import Any

import pytest

from .findings import DEFAULT_STAGES


class FtDoctorWarning(UserWarning):
    """A warning finding of the walk, shown in pytest's warnings summary."""


def pytest_addoption(parser):
    group = parser.getgroup("ftdoctor", "fine-tuning pipeline checks (ftdoctor)")
    group.addoption("--ftdoctor", action="store_true", default=False,
                    help="walk the configured training scripts, one test item per stage")
    group.addoption("--ftdoctor-script", action="append", default=[], metavar="'PATH [ARGS...]'",
                    help="a training script to walk, with its arguments (repeatable; adds to the ini key "
                         "ftdoctor_scripts)")
    group.addoption("--ftdoctor-stages", default=None, metavar="STAGES",
                    help="comma-separated stages to walk (default: all)")
    group.addoption("--ftdoctor-gpu-memory", default=None, metavar="SIZE",
                    help="plan the memory stage for this device, e.g. 24GiB or A100-80GB")
    parser.addini("ftdoctor_scripts", type="linelist", default=[],
                  help="training scripts (with arguments) that `pytest --ftdoctor` walks, one per line")
    parser.addini("ftdoctor_timeout", default="600", help="seconds a script may take to reach trainer.train()")


def _scripts(config) -> list[tuple[str, list[str]]]:
    lines = list(config.getini("ftdoctor_scripts")) + list(config.getoption("ftdoctor_script") or [])
    out = []
    for line in lines:
        parts = shlex.split(line)
        if parts:
            path = parts[0] if os.path.isabs(parts[0]) else os.path.join(str(config.rootpath), parts[0])
            out.append((os.path.normpath(path), parts[1:]))
    return out


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

            from .api import HarnessError, check_script
            from .cli import _parse_size

            if self._artifacts is None:
                self._artifacts = tempfile.mkdtemp(prefix="ftdoctor-pytest-")
            stages = self.config.getoption("ftdoctor_stages")
            gpu = self.config.getoption("ftdoctor_gpu_memory")
            options = {"gpu_memory": _parse_size(gpu)} if gpu else {}
            try:
                self.results[key] = check_script(
                    script, args, timeout=float(self.config.getini("ftdoctor_timeout")),
                    stages=stages.split(",") if stages else None, options=options,
                    check_dirs=_check_dirs(self.config, script),
                    artifacts_dir=os.path.join(self._artifacts, str(len(self.results))))
            except HarnessError as exc:
                self.results[key] = exc
        return self.results[key]

    def close(self) -> None:
        if self._artifacts is not None:
            import shutil

            shutil.rmtree(self._artifacts, ignore_errors=True)


def _check_dirs(config, script):
    from .api import default_check_dirs

    return default_check_dirs(os.path.dirname(script), str(config.rootpath))


def pytest_configure(config):
    if config.getoption("ftdoctor"):
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
        stages = self.config.getoption("ftdoctor_stages")
        for stage in (stages.split(",") if stages else DEFAULT_STAGES):
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
        result = self.config._ftdoctor_walks.get(self.parent.script, self.parent.script_args)
        if isinstance(result, Exception):
            raise HarnessFailed(str(result))
        if result.report is None:
            if self.stage == "setup":
                raise HarnessFailed(result.message)
            _skip(f"no pipeline was captured: {result.message}")
        report = result.report
        if report.internal_errors and self.stage == "setup":
            raise HarnessFailed("ftdoctor internal error (a bug in ftdoctor, not in your pipeline):\n"
                                + "\n".join(report.internal_errors))
        st = report.stage(self.stage)
        if st is None:
            _skip(f"stage {self.stage} was not run")
        if st.status == "skip":
            _skip(st.reason or "skipped")
        if st.status == "fail":
            raise StageFailed(st, report)
        for f in st.findings:
            if f.severity == "warning":
                warnings.warn(FtDoctorWarning(f"{self.nodeid} {f.code} {f.title}: {f.detail} "
                                              f"Fix: {f.fix}"))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, StageFailed):
            return format_stage(excinfo.value.stage_result)
        if isinstance(excinfo.value, HarnessFailed):
            return f"ftdoctor could not walk {self.parent.script}: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"ftdoctor {self.stage}: {os.path.basename(self.parent.script)}"


def format_stage(st) -> str:
    """A failed stage as a person should read it: each finding, the user's line and the fix."""
    from .source import source_lines

    lines = [f"ftdoctor stage `{st.stage}` failed"]
    for f in st.findings:
        lines.append("")
        lines.append(f"{f.code} [{f.severity}] {f.title}")
        lines.append(f"  {f.detail}")
        if f.location:
            lines.append(f"  at {f.location}")
            src = source_lines(f.location)
            if src is not None:
                start, code = src
                for i, text in enumerate(code.splitlines()):
                    lines.append(f"  {start + i:>5} | {text}")
        if f.fix:
            lines.append(f"  fix: {f.fix}")
    return "\n".join(lines)


# -- fixtures for a team's own pytest checks -------------------------------------------------------------------

def pytest_generate_tests(metafunc):
    """A test that uses an ftdoctor_* fixture runs once per configured script."""
    if "ftdoctor_script" not in metafunc.fixturenames or not metafunc.config.getoption("ftdoctor"):
        return
    scripts = _scripts(metafunc.config)
    if scripts:
        metafunc.parametrize("ftdoctor_script", scripts, indirect=True,
                             ids=[os.path.basename(s) for s, _ in scripts])


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
    pytest.skip("the Trainer lives in the script's own process and cannot be handed to pytest: write a check "
                "with `ftdoctor.stage_check` (it receives `trainer`) in ftdoctor_checks/")


@pytest.fixture
def ftdoctor_batch(request, ftdoctor_script):
    """The first training batch, built by the pipeline's own collator."""
    return _artifact(request, ftdoctor_script, "batch", "batch")


@pytest.fixture
def ftdoctor_train_dataset(request, ftdoctor_script):
    """The training dataset as walked (the tokenized stand-in when the raw one was passed)."""
    return _artifact(request, ftdoctor_script, "train_dataset", "train_dataset")
