"""Core: stages, rules, findings, the check registry, the report model, places in the user's source, frames of
the user's code, progress events and the process environment. Imports nothing else of ftdoctor."""
