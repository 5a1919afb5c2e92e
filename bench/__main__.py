"""python -m bench <benchmark> [options]"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    speed = sub.add_parser("speed", help="chat path: load, first token, decode, cold ask, chat window")
    speed.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.name == "speed":
        from bench import speed as module

        module.main(args.runs)


if __name__ == "__main__":
    main()
