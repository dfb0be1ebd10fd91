"""Process: the parent and the child of `ftdoctor check` (one child process per script) and the result they
exchange. Imports output, engine and the layers below."""
