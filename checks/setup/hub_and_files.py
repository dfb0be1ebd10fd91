"""What the hub or the disk could not provide: a model, dataset or metric the hub cannot serve (no network, offline
mode, a wrong name), a file that is not there."""

from __future__ import annotations

import os
import re

from ftdoctor.sdk import finding

_HUB_PATTERNS = (
    "couldn't connect to",
    "couldn't reach",
    "doesn't exist on the hugging face hub",
    "we couldn't connect",
    "offline mode is enabled",
    "cannot find the requested files in the disk cache",
    "is not a local folder and is not a valid model identifier",
    "failed to resolve",
    "max retries exceeded",
    "name or service not known",
    "temporary failure in name resolution",
    "connection error",
)


def hub_unreachable(exc):
    text = str(exc).lower()
    names = {type(e).__name__ for e in _chain(exc)}
    if not (
        any(p in text for p in _HUB_PATTERNS)
        or names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "RepositoryNotFoundError"}
    ):
        return None
    what, kind = _requested_name(exc)
    if what is None:
        m = re.search(r"(?:load the files of|reach|module script at|identifier|for)\s+'?([\w./-]+)'?", str(exc))
        what = m.group(1) if m else None
    offline = [
        v
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")
        if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
    ]
    shown = f"`{what}`" if what else "the requested repository"
    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if offline:
        detail = (
            f"{shown} is not in the local cache and offline mode is on ({'=1, '.join(offline)}=1), so it "
            f"cannot be downloaded. {detail}"
        )
    name = what or "NAME"
    if kind == "metric":
        fix = (
            f"Metrics of `evaluate` are scripts: copy it once where the network is reachable (`hf download "
            f"evaluate-metric/{name} --repo-type space --local-dir metrics/{name}`) and load it by path: "
            f'`evaluate.load("metrics/{name}")`.'
        )
    else:
        download = f"hf download {name}" + (" --repo-type dataset" if kind == "dataset" else "")
        fix = (
            f"Download {shown} once where the network is reachable (`{download}`, with the same HF_HOME) and "
            "run with `HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1` (`ftdoctor check "
            "--offline`), or pass a local folder path instead of the hub name."
        )
    return finding("FTD003", detail, fix, evidence={"name": what, "kind": kind, "offline": offline})


# Parameters that name what a loader fetches: from_pretrained, hf_hub_download, load_dataset, evaluate.load.
_NAME_PARAMS = ("pretrained_model_name_or_path", "repo_id", "path")
_LOADERS = {"transformers": "model", "huggingface_hub": "model", "datasets": "dataset", "evaluate": "metric"}


def _requested_name(exc) -> tuple[str | None, str]:
    """The name the failing loader was asked for, read from the outermost loader frame of the traceback,
    and what it is (model, dataset or metric) from the library that was loading it."""
    tb = exc.__traceback__
    while tb is not None:
        frame, code = tb.tb_frame, tb.tb_frame.f_code
        library = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if library in _LOADERS:
            params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
            for param in _NAME_PARAMS:
                value = frame.f_locals.get(param)
                if param in params and isinstance(value, (str, os.PathLike)):
                    return os.fspath(value), _LOADERS[library]
        tb = tb.tb_next
    return None, "model"


def missing_file(exc):
    if not isinstance(exc, FileNotFoundError):
        return None
    path = exc.filename or (re.findall(r"'([^']+)'", str(exc)) or [""])[-1]
    return finding(
        "FTD004",
        f"No such file: {path!r} (working directory: {os.getcwd()}).",
        "Check the path; relative paths resolve against the directory you run from. Build it from "
        "the script's folder: `Path(__file__).parent / ...`.",
        evidence={"path": path},
    )


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
