"""Run one script (or notebook) as `python SCRIPT ARGS` would, and stop it after its first optimizer steps.

usage: python plain.py STEPS SCRIPT [ARGS...]

run.py uses this for the plain run that decides whether a corpus entry counts: the script must reach STEPS
optimizer steps (or end by itself after at least one) without an exception. A global optimizer step hook counts
the steps of every torch optimizer (Trainer, TRL, Accelerate and hand-written loops alike); at STEPS it ends the
process with exit 0. A notebook's code cells run as one script, shell (`!`) and magic (`%`) lines left out, with
`display` and `get_ipython` standing in for IPython's, as ftdoctor runs a notebook. The last line printed on
stdout is `[plain] optimizer steps N (stopped|finished)`.
"""

from __future__ import annotations

import builtins
import json
import os
import runpy
import sys
import types

FOREIGN_CELLS = (
    "%%bash",
    "%%sh",
    "%%script",
    "%%writefile",
    "%%html",
    "%%javascript",
    "%%latex",
    "%%markdown",
    "%%svg",
    "%%perl",
    "%%ruby",
    "%%capture --no-display",
)


class _Enough(BaseException):
    """Raised from the step hook once the script has taken the steps asked for."""


def notebook_source(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    lines = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        cell_lines = text.split("\n")
        foreign = bool(cell_lines) and cell_lines[0].strip().startswith(FOREIGN_CELLS)
        for line in cell_lines:
            stripped = line.lstrip()
            if foreign or stripped.startswith(("!", "%")):
                line = line[: len(line) - len(stripped)] + "pass"
            lines.append(line)
    return "\n".join(lines) + "\n"


class _NoIPython:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _finish(steps: int, how: str, code: int = 0) -> None:
    print(f"\n[plain] optimizer steps {steps} ({how})", flush=True)
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    limit, script, args = int(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3:]
    count = [0]

    def hook(optimizer, *_):
        count[0] += 1
        if count[0] >= limit:
            raise _Enough

    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(hook)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(script))
    try:
        if script.endswith(".ipynb"):
            source = notebook_source(script)
            module = types.ModuleType("__main__")
            module.__dict__.update(
                {
                    "__file__": script,
                    "__builtins__": builtins,
                    "display": print,
                    "get_ipython": lambda: _NoIPython(),
                }
            )
            sys.modules["__main__"] = module
            exec(compile(source, script, "exec"), module.__dict__)
        else:
            runpy.run_path(script, run_name="__main__")
    except _Enough:
        _finish(count[0], "stopped")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    _finish(count[0], "finished")


if __name__ == "__main__":
    main()
