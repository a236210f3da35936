"""
Instructions per delivery of the fan-out path, counted by callgrind: a
figure that does not drift with the machine's load, for before/after
comparisons on a busy shared machine (wall-clock ratios: run_all.py).

For the work tree and for each C{--rev} (chatsvc exported at that commit,
as run_all's C{--chatsvc-rev} does), runs L{benchmarks.instructions}
three times under C{valgrind --tool=callgrind}: without messages (the
baseline: start-up and logins), flushing every 20 messages (flat out)
and flushing after every message (paced), and prints

    instructions per delivery = (collected - baseline) / deliveries

Usage (from the repository root; about a minute per tree)::

    python -m benchmarks.count_instructions
    python -m benchmarks.count_instructions --rev 6ebdfe0 --rev HEAD
    python -m benchmarks.count_instructions --members 200 --messages 200

Needs valgrind (Debian package C{valgrind}).  Results: RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.servers import PINNED, pinChatsvc

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "instructions.py"

#: The flush intervals measured: flat out (many messages per turn) and
#: paced (one message per turn).
FLUSHES = (("flat out (flush every 20)", 20), ("paced (flush every message)", 1))


def collected(tree: Path | None, *args: int) -> tuple[int, int]:
    """
    Run the workload under callgrind with chatsvc from C{tree} (L{None}:
    the work tree); return (instructions collected, deliveries).
    """
    env = dict(os.environ, PYTHONHASHSEED="0")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    else:
        env["PYTHONPATH"] = str(HERE.parent)
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(WORKLOAD),
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"workload failed ({result.returncode}):\n{result.stderr[-2000:]}")
    count = re.search(r"Collected : (\d+)", result.stderr)
    deliveries = re.search(r"deliveries=(\d+)", result.stderr)
    if count is None or deliveries is None:
        raise SystemExit(f"no count in callgrind's output:\n{result.stderr[-2000:]}")
    return int(count.group(1)), int(deliveries.group(1))


def measure(tree: Path | None, members: int, messages: int) -> dict[str, float]:
    """
    Instructions per delivery for each of L{FLUSHES}.
    """
    baseline, _ = collected(tree, members, 0)
    perDelivery = {}
    for name, every in FLUSHES:
        count, deliveries = collected(tree, members, messages, every)
        perDelivery[name] = (count - baseline) / deliveries
    return perDelivery


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rev",
        action="append",
        default=[],
        help="also measure chatsvc at this git revision (repeatable)",
    )
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument(
        "--no-work-tree", action="store_true", help="measure only the --rev revisions"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees: list[tuple[str, Path | None]] = []
    for rev in args.rev:
        full = pinChatsvc(rev)
        trees.append((f"{rev} ({full[:10]})", Path(PINNED["tree"])))
    if not args.no_work_tree:
        trees.append(("work tree", None))
    print(
        f"instructions per delivery: {args.members} members, one sender, "
        f"{args.messages} messages (callgrind, PYTHONHASHSEED=0)"
    )
    print("| chatsvc | " + " | ".join(name for name, _ in FLUSHES) + " |")
    print("|---|" + "---|" * len(FLUSHES))
    for label, tree in trees:
        result = measure(tree, args.members, args.messages)
        print(f"| {label} | " + " | ".join(f"{result[name]:,.0f}" for name, _ in FLUSHES) + " |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
