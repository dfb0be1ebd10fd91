"""Shared test setup: offline Hugging Face, a temporary HF_HOME, fixtures built once per test session, and the
tiers: tests/unit is the quick tier, tests/pipelines (marked slow) walks whole pipelines; tests that start a
process run last. Helpers to import are in tests/helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Re-exported for tests that still import them from here; new tests import them from helpers.
from helpers import PIPELINES, ROOT, findings_at, pipeline_path, run_cli  # noqa: F401

pytest_plugins = ["pytester"]

TIERED = Path(__file__).resolve().parent / "pipelines"

# Set before anything imports transformers, datasets or evaluate: a hub miss must fail at once, never retry.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A check that reports a code it did not declare fails ftdoctor's own tests (in a user's run it is only noted).
os.environ["FTDOCTOR_STRICT_CONTRACTS"] = "1"


@pytest.fixture(scope="session", autouse=True)
def hf_home(tmp_path_factory, request):
    """A temporary HF_HOME and fixture cache for the whole session (fixtures are built once and reused). Under
    xdist each worker has its own HF_HOME and the workers share one fixture cache (see `fixtures_built`)."""
    home = tmp_path_factory.mktemp("hf_home")
    old = {k: os.environ.get(k) for k in ("HF_HOME", "FTDOCTOR_FIXTURES_DIR")}
    os.environ["HF_HOME"] = str(home)
    if "FTDOCTOR_FIXTURES_DIR" not in os.environ:
        if _xdist_worker(request.config):
            # The parent of a worker's basetemp is the run's, the same for every worker.
            shared = tmp_path_factory.getbasetemp().parent / "ftdoctor_fixtures"
            shared.mkdir(exist_ok=True)
        else:
            shared = tmp_path_factory.mktemp("ftdoctor_fixtures")
        os.environ["FTDOCTOR_FIXTURES_DIR"] = str(shared)
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


_PREBUILT: list[bool] = []


@pytest.fixture(autouse=True)
def fixtures_built(request, hf_home):
    """Under xdist, the first slow test of each worker builds every fixture not built yet, holding a lock on the
    shared cache: one worker builds, the others wait and then find them built (a fixture is never built by two
    workers at once). A serial run builds each fixture when it is first asked for, as before."""
    if _PREBUILT or not _xdist_worker(request.config) or request.node.get_closest_marker("slow") is None:
        return
    from filelock import FileLock

    from ftdoctor import fixtures

    lock = fixtures.cache_dir() + ".lock"
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with FileLock(lock):
        fixtures.build_all()
    _PREBUILT.append(True)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Every device counts as an accelerator (the CPU model plays the GPU's); `free` is what the driver reports
    (tests/unit/test_device.py and tests/pipelines/test_device_e2e.py)."""
    from ftdoctor.runtime import devices

    state = {"free": 1 << 40}
    monkeypatch.setattr(devices, "is_accelerator", lambda device: True)
    monkeypatch.setattr(devices, "device_free_bytes", lambda device: state["free"])
    return state


@pytest.fixture
def check_pipeline(tmp_path, monkeypatch):
    """Walk a fixture pipeline from a scratch working directory, in this process (the same capture and walk as
    the child process of `ftdoctor check`, without paying its imports again; test_isolation runs the child)."""
    from ftdoctor.process.parent import check_script

    monkeypatch.chdir(tmp_path)

    def run(name: str, *args: str, stages=None, options=None):
        # No time limit on the overfit stage unless a test sets one: its verdicts must not depend on how busy the
        # machine running the tests is (a budget that runs out gives no verdict, FTD705).
        options = {"overfit_seconds": None} if options is None else options
        result = check_script(
            pipeline_path(name), list(args), timeout=300, stages=stages, in_process=True, options=options
        )
        assert result.report is not None, result.message
        assert not result.report.internal_errors, result.report.internal_errors
        return result.report

    return run


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Everything under tests/pipelines is slow (a file that forgets its pytestmark still leaves the quick tier);
    then, as pytest's own suite does, the quick tests first and those that start a process last (before `-m`
    deselects, so the order holds for any selection)."""
    quick, slow, spawning = [], [], []
    for item in items:
        if item.get_closest_marker("slow") is None and TIERED in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("subprocess") is not None:
            spawning.append(item)
        elif item.get_closest_marker("slow") is not None:
            slow.append(item)
        else:
            quick.append(item)
    items[:] = quick + slow + spawning
    return (yield)


def pytest_configure(config):
    if _xdist_worker(config):
        # Each worker gets its share of the cores, and so do its child processes: torch's threads of several
        # workers on the same cores wait on each other, every walk runs slower, and the tests that time a walk or
        # a collective (test_distributed waits 8 s for the other rank) run closer to their limits.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // int(config.workerinput.get("workercount", 1)))
        if "OMP_NUM_THREADS" not in os.environ:
            os.environ["OMP_NUM_THREADS"] = str(threads)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)


# Modules whose module- or session-scoped fixtures build every fixture, or run every LLM pipeline, in fresh
# interpreters: under xdist each runs whole on one worker, so that is done once, not once per worker.
ONE_WORKER = ("pipelines/test_fixtures.py", "pipelines/test_llm_fixtures.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N` (--dist load) sends test by test to the workers; this does the same but keeps each ONE_WORKER module
    on one worker. (xdist_group with --dist loadgroup does not group under pytest 9.2, pytest-xdist#1386.) Any
    other --dist is left to xdist."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(ONE_WORKER) else nodeid

    return Scheduling(config, log)
