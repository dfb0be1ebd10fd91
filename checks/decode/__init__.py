"""decode: read samples of the train and eval datasets as the trainer will see them, and decode them.

The modules register their checks and rules in the order they are imported here: the rows first (their first check
provides the samples every later check reads), then the tasks' contracts, then the silent bugs.
"""

from . import (
    rows,  # noqa: F401
    silent_bugs,  # noqa: F401
    task_contracts,  # noqa: F401
)
