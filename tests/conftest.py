"""
pytest configuration; trial ignores this file.

A run in which no test passed (everything skipped or deselected) ends
with exit status 5, pytest's "no tests ran", instead of 0, so that CI
cannot look green without having tested anything.  Collecting only
(C{--collect-only}) is not a run and keeps its status.
"""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if exitstatus != pytest.ExitCode.OK or config.option.collectonly:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not reporter.stats.get("passed"):
        reporter.write_line("no test passed: exit status 5", red=True)
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
