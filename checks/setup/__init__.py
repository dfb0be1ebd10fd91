"""setup: the script up to training. An exception raised before ``trainer.train()`` is diagnosed here.

``script`` holds the checks and every rule they report; the causes they recognise live beside it, one module per
kind: arguments and imports transformers 5 removed, what the hub or the disk could not provide, the LLM libraries.
"""

from . import raised, script  # noqa: F401
