"""
The test suite on the oldest and newest supported Python and Twisted.

    nox                      # both sessions below
    nox -s "tests(python='3.10', twisted='oldest')"
    nox -- tests/test_output.py   # arguments after -- go to pytest

C{tests(python='3.10', twisted='oldest')} pins Twisted to the floor that
C{setup.cfg}'s C{install_requires} names, read from there, so raising the
floor moves this session with it; C{tests(python='3.13',
twisted='newest')} takes the newest Twisted on the package index, so a new
release is tried as soon as it is out.  Everything else resolves to its
newest version in both.  nox looks for C{python3.10} and C{python3.13} on
C{PATH}; C{.ci/run} puts pyenv's there.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import nox
from packaging.requirements import Requirement

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent


def twistedFloor() -> str:
    """
    The oldest Twisted that C{setup.cfg} allows, as a pin for pip.
    """
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    for line in setup["options"]["install_requires"].splitlines():
        requirement = Requirement(line) if line.strip() else None
        if requirement is not None and requirement.name.lower() == "twisted":
            [floor] = [s.version for s in requirement.specifier if s.operator == ">="]
            extras = ",".join(sorted(requirement.extras))
            return f"twisted[{extras}]=={floor}" if extras else f"twisted=={floor}"
    raise RuntimeError("setup.cfg: no twisted requirement in install_requires")


@nox.session
@nox.parametrize(
    ("python", "twisted"),
    [("3.10", "oldest"), ("3.13", "newest")],
)
def tests(session: nox.Session, twisted: str) -> None:
    """
    Install the project as the README says (editable, with the test
    extra) and run the whole suite with pytest.
    """
    pins = [twistedFloor()] if twisted == "oldest" else []
    session.install("-e", ".[test]", *pins)
    session.run(
        "python",
        "-c",
        "import sys, twisted; print('Python', sys.version.split()[0], 'Twisted', twisted.__version__)",
    )
    session.run("pytest", "-q", *session.posargs)
