"""
Hypothesis settings profiles for the chatsvc tests (not a test module).

The profile is chosen with the C{HYPOTHESIS_PROFILE} environment variable
and defaults to C{ci}:

  - C{ci}: enough examples to matter (L{examples} gives each property its
    own count, 1,500 for the framer's chunking property), no deadline (a
    busy CI machine must not fail a test for being slow), no example
    database written into the tree, and the reproduction blob printed on
    failure;
  - C{dev}: a tenth of the examples, for a quick local run;
  - C{thorough}: ten times the examples, for a long fuzzing session
    (C{HYPOTHESIS_PROFILE=thorough pytest tests/test_framing.py}).

Import L{examples} (which loads the profile) before using C{@given}.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SCALE = {"ci": 1.0, "dev": 0.1, "thorough": 10.0}

for _name in _SCALE:
    settings.register_profile(
        _name,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in _SCALE:
    raise RuntimeError(
        f"HYPOTHESIS_PROFILE={PROFILE!r}: expected one of {', '.join(sorted(_SCALE))}"
    )
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """
    The number of examples a property gets: C{count} in the C{ci}
    profile, scaled for the others.
    """
    return max(10, int(count * _SCALE[PROFILE]))
