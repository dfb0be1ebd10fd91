"""ftdoctor's built-in checks, one module per stage (the module name is the stage name)."""

from . import (  # noqa: F401
    backward,
    collate,
    config,
    decode,
    distributed,
    forward,
    loop,
    memory,
    metrics,
    overfit,
    setup,
)
