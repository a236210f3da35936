"""
pytest configuration; trial ignores this file.

With pytest-twisted installed, a plain pytest function that runs before
an asynchronous trial TestCase leaves that test failing with
DirtyReactorAggregateError (pytest-twisted #93, #147): run trial
TestCases first.
"""

from twisted.trial import unittest


def pytest_collection_modifyitems(session, config, items):
    def isTrial(item):
        cls = getattr(item, "cls", None)
        return cls is not None and issubclass(cls, unittest.SynchronousTestCase)

    items.sort(key=lambda item: 0 if isTrial(item) else 1)
