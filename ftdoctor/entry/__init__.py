"""Entry points: the command line, the pytest plugin, the in-process pre-flight and the project's
`[tool.ftdoctor]` settings. The top layer: it may import every other."""
