"""`python -m demo [--out DIR]`: the complete local demonstration (`make demo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo.processes import Supervisor
from demo.steps import Progress, StepFailed, run_steps
from demo.walkthrough import Demo, DemoOptions, prepare_out_dir


def _resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--resolution", type=_resolution, default=(1280, 720))
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument(
        "--short", action="store_true", help="shorter scenes and post-roll (for the test suite)"
    )
    args = parser.parse_args(argv)
    width, height = args.resolution
    options = DemoOptions(out=args.out, width=width, height=height, fps=args.fps)
    if args.short:
        options = DemoOptions(
            out=args.out,
            width=width,
            height=height,
            fps=args.fps,
            visitor_s=24.0,
            passerby_s=13.0,
            post_roll_s=3.0,
        )
    print("sealed-doorbell demonstration: a doorbell that seals its clips and releases them")
    print("only under a threshold-signed token after a legal check.")
    try:
        prepare_out_dir(args.out.resolve())
        with Supervisor(args.out.resolve() / "logs") as supervisor:
            demo = Demo(options=options, progress=Progress(total=7), supervisor=supervisor)
            progress = demo.progress
            progress.section("set-up: a fresh deployment, a private broker and the cloud stub")
            demo.set_up()
            run_steps(demo.steps(), progress)
    except StepFailed as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        print(f"logs of the services: {args.out.resolve() / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: every process the demo started has been stopped", file=sys.stderr)
        return 130
    print(f"\nall steps passed in {demo.progress.elapsed():.0f} s. Look at:")
    out = args.out
    print(f"  {out}/evidence/      the agency's evidence: sealed files, MP4s, signed manifest")
    print(f"  {out}/report.json    outcomes, audit chains and the transparency report")
    print(f"  {out}/device-state/  the device's storage: sealed clips only")
    print(f"  {out}/owner.key      the owner's key: `age -d -i {out}/owner.key FILE` opens a clip")
    print(f"  {out}/owner-bundle/  the owner's MQTT credential: reads the notices and status")
    print(f"  {out}/release-log/   the release log, its three witnesses and their policy")
    print(f"  {out}/owner-monitor/ the owner's monitor: the log's checkpoint, entries found")
    print(f"  {out}/logs/          the broker's, cloud stub's, agent's, log's, witnesses' logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
