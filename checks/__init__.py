"""ftdoctor's built-in checks, one module per stage (the module name is the stage name)."""

from . import backward, collate, config, decode, forward, memory, metrics, overfit, setup  # noqa: F401
from . import loop  # noqa: F401  (hand-written loop checks, registered at their stages)
from . import distributed  # noqa: F401  (run with --nproc N)
