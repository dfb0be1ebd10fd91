"""Output: the report rendered for people and tools (terminal, plain text, JSON, GitHub, SARIF, JUnit, HTML), the
project's suppressions, and the rule pages. Imports only core (and the rule catalog it documents)."""
