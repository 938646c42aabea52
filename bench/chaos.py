"""The fault test at full size: 10,000 events over 1,000 profiles through `dcb serve`,
SIGKILLed and restarted twice while the fake platforms answer 20% 429 and 5% 500.

    python bench/chaos.py [--events 10000] [--profiles 1000] [--kills 2]

Prints what it checked; exits 1 when anything acknowledged was lost or a profile ended
with properties its events do not decide.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos.harness import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--profiles", type=int, default=1_000)
    parser.add_argument("--kills", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args.events, args.profiles, Path(tmp), kills=args.kills)
    print("\n".join(report.lines()))
    failed = report.missing or report.mismatched
    print("FAILED" if failed else "OK: nothing acknowledged was lost")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
