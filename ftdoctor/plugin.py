"""pytest plugin entry point: adds --ftdoctor; without it, nothing is collected or changed."""

from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("ftdoctor", "fine-tuning pipeline checks")
    group.addoption("--ftdoctor", action="store_true", default=False,
                    help="walk the training pipelines named by --ftdoctor-script / ftdoctor_scripts as test items")
