"""The fault test at full size: 10,000 events over 1,000 profiles through `dcb serve`,
SIGKILLed and restarted twice while the fake platforms answer 20% 429 and 5% 500; with
`--redis`, through `dcb web` and three `dcb worker`s on Redis (appendfsync always), one
worker SIGKILLed three times and Redis restarted once.

    python bench/chaos.py [--events 10000] [--profiles 1000] [--kills N] [--redis]

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
    parser.add_argument(
        "--kills",
        type=int,
        default=None,
        help="faults to inject (default 2; 4 with --redis: 3 kills, 1 Redis restart)",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="dcb web + three dcb workers on Redis instead of dcb serve",
    )
    args = parser.parse_args()
    faults = args.kills if args.kills is not None else (4 if args.redis else 2)
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args.events, args.profiles, Path(tmp), kills=faults, scaled=args.redis)
    print("\n".join(report.lines()))
    failed = report.missing or report.mismatched
    print("FAILED" if failed else "OK: nothing acknowledged was lost")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
