"""Settings from `[tool.ftdoctor]` in pyproject.toml, found like ruff finds its own: the closest pyproject.toml
above the working directory that has the table. The command line and pytest's ini keys override it."""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from ftdoctor.core.rules import SEVERITIES
from ftdoctor.core.stages import STAGES

PYPROJECT = "pyproject.toml"
# Every key of [tool.ftdoctor]; the pytest ini keys are the same names as ftdoctor_<key> with _ for -.
KEYS = (
    "scripts",
    "stages",
    "ignore",
    "severity",
    "timeout",
    "walk-timeout",
    "offline",
    "budget",
    "gpu-memory",
    "nproc",
)
BUDGETS = ("fast", "full")
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\d+")


class ConfigError(Exception):
    """The configuration cannot be used (unknown key, wrong type): ftdoctor exits 2 and says which."""


@dataclass
class Settings:
    """What a run is told to do; ``None`` means "not set here" (a later source or the default decides)."""

    scripts: list[tuple[str, list[str]]] = field(default_factory=list)  # (absolute path, arguments)
    stages: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    severity: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    walk_timeout: float | None = None
    offline: bool | None = None
    budget: str | None = None
    gpu_memory: tuple[int, str | None] | None = None  # bytes, and the GPU's name when one was named
    nproc: int | None = None  # ranks to launch under torchrun (the distributed stage); 1 when not set
    path: str | None = None  # the pyproject.toml the settings came from

    def override(self, **values: Any) -> Settings:
        """These settings with every value that is set (not None, not empty) taken from ``values``."""
        return replace(self, **{k: v for k, v in values.items() if v is not None and v != [] and v != {}})

    def options(self) -> dict[str, Any]:
        """The walk's options (the values checks receive by name)."""
        out: dict[str, Any] = {}
        if self.gpu_memory:
            out["gpu_memory"], name = self.gpu_memory
            if name:
                out["gpu_name"] = name
        if self.budget:
            out["budget"] = self.budget
        return out


def find_pyproject(start: str | None = None) -> str | None:
    """The closest pyproject.toml at or above ``start`` that has a [tool.ftdoctor] table."""
    here = os.path.abspath(start or os.getcwd())
    while True:
        path = os.path.join(here, PYPROJECT)
        if os.path.isfile(path) and _mentions_ftdoctor(path) and "ftdoctor" in _read_toml(path).get("tool", {}):
            return path
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def load(start: str | None = None, path: str | None = None) -> Settings:
    """The settings of [tool.ftdoctor] (``path``, or the pyproject.toml found from ``start``); empty when none."""
    path = path or find_pyproject(start)
    if path is None:
        return Settings()
    table = _read_toml(path).get("tool", {}).get("ftdoctor", {})
    return from_table(table, path)


def from_table(table: dict[str, Any], path: str) -> Settings:
    where = f"[tool.ftdoctor] in {path}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = [k for k in table if k not in KEYS]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k.replace("_", "-"), KEYS, n=1)
            hints.append(f"`{k}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(hints)} in {where}; valid keys: {', '.join(KEYS)}"
        )
    base = os.path.dirname(os.path.abspath(path))
    s = Settings(path=path)
    if "scripts" in table:
        s.scripts = parse_scripts(_strings(table["scripts"], "scripts", where), base)
    if "stages" in table:
        s.stages = parse_stages(table["stages"], where)
    if "ignore" in table:
        s.ignore = parse_codes(table["ignore"], "ignore", where)
    if "severity" in table:
        sev = table["severity"]
        if not isinstance(sev, dict):
            raise ConfigError(f'`severity` in {where} must be a table of code = "error" | "warning" | "info"')
        s.severity = parse_severity(sev, where)
    for key in ("timeout", "walk-timeout"):
        if key in table:
            setattr(s, key.replace("-", "_"), parse_seconds(table[key], key, where))
    if "offline" in table:
        if not isinstance(table["offline"], bool):
            raise ConfigError(f"`offline` in {where} must be true or false, not {table['offline']!r}")
        s.offline = table["offline"]
    if "budget" in table:
        s.budget = parse_budget(table["budget"], where)
    if "nproc" in table:
        s.nproc = parse_nproc(table["nproc"], where)
    if "gpu-memory" in table:
        value = table["gpu-memory"]
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f'`gpu-memory` in {where} must be a size ("24GiB") or a GPU name ("A100-80GB")')
        try:
            s.gpu_memory = parse_gpu_memory(str(value))
        except ValueError as exc:
            raise ConfigError(f"`gpu-memory` in {where}: {exc}") from None
    return s


# -- the values, shared with the command line and the pytest ini keys -----------------------------------------


def parse_scripts(lines: list[str], base: str) -> list[tuple[str, list[str]]]:
    """ "PATH ARGS" lines: the path relative to ``base`` (the directory of the file that names it)."""
    out = []
    for line in lines:
        parts = shlex.split(line)
        if parts:
            path = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
            out.append((os.path.normpath(path), parts[1:]))
    return out


def parse_stages(value: Any, where: str = "--stages") -> list[str]:
    names = _split(value, "stages", where)
    bad = [n for n in names if n not in STAGES]
    if bad:
        raise ConfigError(f"unknown stage(s) {', '.join(bad)} in {where}; stages are: {' '.join(STAGES)}")
    return names


def parse_codes(value: Any, key: str = "ignore", where: str = "--ignore") -> list[str]:
    codes = [c.upper() for c in _split(value, key, where)]
    for code in codes:
        _check_code(code, where)
    return codes


def parse_severity(table: dict[str, Any], where: str) -> dict[str, str]:
    out = {}
    for code, level in table.items():
        code = str(code).strip().upper()
        _check_code(code, where)
        if level not in SEVERITIES:
            raise ConfigError(f"severity of {code} in {where} must be one of {', '.join(SEVERITIES)}, not {level!r}")
        out[code] = level
    return out


def parse_seconds(value: Any, key: str, where: str) -> float:
    """A timeout: a positive, finite number of seconds (0, a negative number, nan or inf would turn it off or
    make it fire at once)."""
    try:
        seconds = float(value)
        if isinstance(value, bool) or not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"`{key}` in {where} must be a positive number of seconds, not {value!r}") from None
    return seconds


def parse_nproc(value: Any, where: str = "--nproc") -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or n > 8:
        raise ConfigError(f"`nproc` in {where} must be a number of ranks from 1 to 8, not {value!r}")
    return n


def parse_budget(value: Any, where: str) -> str:
    if value not in BUDGETS:
        raise ConfigError(f"`budget` in {where} must be one of {', '.join(BUDGETS)}, not {value!r}")
    return value


def _check_code(code: str, where: str) -> None:
    if not _CODE.fullmatch(code):
        raise ConfigError(f"{code!r} in {where} is not a finding code (like FTD209)")
    if code.startswith("FTD"):  # ftdoctor's own codes can be checked against the catalog (a typo ignores nothing)
        from ftdoctor.output.rule_pages import rules

        if code not in {r.code for r in rules()}:
            raise ConfigError(f"no finding {code} (in {where}); `ftdoctor rules` lists them")


def _split(value: Any, key: str, where: str) -> list[str]:
    """A list of strings, or one string of names separated by commas or spaces."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"`{key}` in {where} must be a list of strings, not {value!r}")
    return [part for v in items for part in re.split(r"[,\s]+", v) if part]


def _strings(value: Any, key: str, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f'`{key}` in {where} must be a list of "PATH ARGS" strings, not {value!r}')
    return items


# -- sizes and GPU names (--gpu-memory 24GiB, --gpu-memory A100-80GB) ------------------------------------------

_UNITS = {
    "B": 1,
    "K": 1e3,
    "KB": 1e3,
    "KIB": 2**10,
    "M": 1e6,
    "MB": 1e6,
    "MIB": 2**20,
    "G": 2**30,
    "GB": 1e9,
    "GIB": 2**30,
    "T": 2**40,
    "TB": 1e12,
    "TIB": 2**40,
}
# Memory of common GPUs, in GiB as their drivers report it.
GPUS = {
    "t4": 15,
    "v100": 16,
    "v100-32gb": 32,
    "a10": 24,
    "a10g": 24,
    "l4": 24,
    "rtx3090": 24,
    "rtx4090": 24,
    "a100": 40,
    "a100-40gb": 40,
    "a100-80gb": 80,
    "h100": 80,
    "h100-80gb": 80,
    "h200": 141,
    "l40s": 48,
}


def parse_gpu_memory(text: str) -> tuple[int, str | None]:
    """(bytes, GPU name) of "24GiB" (no name) or "A100-80GB" (the name as written)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B?|B)?\s*", text, re.I)
    if m:
        try:
            size = int(float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()])
        except ValueError:
            size = None
        if size is not None:
            if size <= 0:
                raise ValueError(f"a memory size must be more than 0 bytes, not {text!r}")
            return size, None
    gib = GPUS.get(text.lower().replace(" ", "").replace("nvidia", ""))
    if gib:
        return int(gib * 2**30), text.strip()
    raise ValueError(f"not a size or a known GPU name: {text!r} (e.g. 24GiB, 80GB, A100-80GB)")


# -- paths: scripts to check, files to write -----------------------------------------------------------------


def output_problem(path: str, scripts: list[tuple[str, list[str]]], option: str = "--html") -> str | None:
    """Why the report may not be written to ``path`` (None when it may): its folder does not exist, it is a
    folder, it is a file the checked scripts read (the script, a module it imports, a file it names), or an
    existing file that is not an HTML page (a report overwrites only an earlier report)."""
    from ftdoctor.core.untrusted import NAME, inline

    shown = inline(path, NAME)
    full = os.path.abspath(path)
    if os.path.isdir(full):
        return f"{option} {shown} is a directory: name the file to write (e.g. {os.path.join(shown, 'report.html')})"
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        return f"{option} {shown}: the folder {inline(folder, NAME)} does not exist"
    if not os.path.exists(full):
        return None
    for script, args in scripts:
        for what, candidate in script_inputs(script, args):
            try:
                same = os.path.samefile(candidate, full)
            except OSError:
                same = False
            if same:
                return f"{option} {shown} is {what}: writing the report there would overwrite it"
    if not _is_html_page(full):
        return f"{option} {shown} exists and is not an HTML page: ftdoctor does not overwrite it"
    return None


def _is_html_page(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512).lstrip().lower()
    except OSError:
        return False
    if not head:  # an empty file: taken as a page only where its name says so
        return path.lower().endswith((".html", ".htm"))
    return head.startswith((b"<!doctype html", b"<html"))


def script_inputs(script: str, args: list[str]) -> list[tuple[str, str]]:
    """(what, path) of the files a script reads that can be known before it runs: itself, the modules beside it
    (or in the working directory) that it imports, and the existing files it names in a string or an argument."""
    import ast

    out = [("the script being checked", script)]
    try:
        with open(script, encoding="utf-8", errors="replace") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        tree = None
    roots = [os.path.dirname(os.path.abspath(script)), os.getcwd()]
    named: list[str] = list(args)
    for node in ast.walk(tree) if tree is not None else ():
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) < 1024:
            named.append(node.value)
        for module in modules:
            parts = module.split(".")
            for root in roots:
                for i in range(1, len(parts) + 1):
                    base = os.path.join(root, *parts[:i])
                    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
                        if os.path.isfile(candidate):
                            out.append((f"a module that {os.path.basename(script)} imports", candidate))
    for value in named:
        if "\0" in value or "\n" in value:
            continue
        for root in (os.getcwd(), roots[0]):
            candidate = os.path.join(root, value)
            if os.path.isfile(candidate):
                out.append((f"a file that {os.path.basename(script)} names", candidate))
    return out


def _mentions_ftdoctor(path: str) -> bool:
    """Only a file that names ftdoctor is parsed (an unrelated, broken pyproject.toml is not ours to judge)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "ftdoctor" in fh.read()
    except OSError:
        return False


def _read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(
                f"cannot read {path}: Python {_py()} has no tomllib; `pip install tomli` (or use Python 3.11+)"
            ) from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _py() -> str:
    import platform

    return platform.python_version()
