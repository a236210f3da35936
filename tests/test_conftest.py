"""
Tests for C{tests/conftest.py}: a pytest run in which no test passed does
not exit 0.

Each test runs pytest in a subprocess on a small suite of its own, in a
temporary directory with its own C{pytest.ini} and a C{conftest.py} that
takes the hook from ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = "from tests.conftest import pytest_sessionfinish  # noqa: F401\n"


class NoTestPassedTests(unittest.SynchronousTestCase):
    def pytest(self, source: str, *args: str) -> subprocess.CompletedProcess:
        """
        Run pytest on a suite made of one test module, C{source}.
        """
        suite = Path(self.mktemp())
        suite.mkdir()
        (suite / "conftest.py").write_text(CONFTEST)
        (suite / "test_one.py").write_text(source)
        (suite / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=suite,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,  # only stops a hang
        )

    def test_allSkipped(self) -> None:
        """
        Every test skipped: exit status 5, and a line saying why.
        """
        done = self.pytest("import pytest\n\ndef test_a():\n    pytest.skip('no')\n")
        self.assertEqual(done.returncode, 5, done.stdout + done.stderr)
        self.assertIn("no test passed", done.stdout)

    def test_onePassed(self) -> None:
        """
        One test passed beside a skipped one: exit status 0.
        """
        done = self.pytest(
            "import pytest\n\ndef test_a():\n    pytest.skip('no')\n\ndef test_b():\n    pass\n"
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def test_collectOnly(self) -> None:
        """
        Listing the tests is not a run: exit status 0.
        """
        done = self.pytest("def test_a():\n    pass\n", "--collect-only")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
