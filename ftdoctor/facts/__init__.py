"""Facts: what datasets, models, tokenizers and a script's namespace hold, read without running anything.
Imports only core."""
