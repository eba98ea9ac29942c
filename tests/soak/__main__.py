"""`python -m tests.soak [--seed N] [--rounds N] [--devices N] [--work-dir DIR]`: `make soak`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.soak.driver import Fault
from tests.soak.runner import SoakOptions, run_soak


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's seed")
    parser.add_argument("--rounds", type=int, default=24, help="requests to drive")
    parser.add_argument("--devices", type=int, default=3, help="agents on simulated cameras")
    parser.add_argument("--fault", action="append", default=[], choices=[f.value for f in Fault],
                        help="draw only from these fault kinds (repeat; default: all)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep logs and state here (default: a new temporary directory)")
    args = parser.parse_args()
    kinds = tuple(Fault(f) for f in args.fault)
    report = run_soak(SoakOptions(args.seed, args.rounds, args.devices, args.work_dir, kinds))
    print(report.summary())
    return 0 if report.findings.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
