"""
The in-process fan-out workload of C{benchmarks/instructions.py} runs and
checks its own deliveries, so an instruction count quoted from it counts
a fan-out that worked.
"""

from __future__ import annotations

from twisted.trial import unittest

from benchmarks import instructions


class InstructionsWorkloadTests(unittest.SynchronousTestCase):
    def test_runs(self) -> None:
        instructions.main(20, 5, 2)

    def test_catchesLoss(self) -> None:
        """
        A fan-out that loses deliveries is an error, not a figure.
        """
        self.patch(instructions, "lineConnection", _dropping(instructions.lineConnection))
        error = self.assertRaises(SystemExit, instructions.main, 5, 3, 1)
        self.assertIn("lost or duplicated", str(error))


def _dropping(connect):
    """
    L{lineConnection} whose third connection's transport forgets what it
    was sent.
    """
    count = [0]

    def connection(*args, **kwargs):
        proto, transport = connect(*args, **kwargs)
        count[0] += 1
        if count[0] == 3:
            transport.write = lambda data: None
        return proto, transport

    return connection
