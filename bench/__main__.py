"""python -m bench <benchmark> [options]"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    speed = sub.add_parser("speed", help="chat path: load, first token, decode, cold ask, chat window")
    speed.add_argument("--runs", type=int, default=5)
    memory = sub.add_parser("memory", help="memory: ingest throughput, retrieval latency, peak memory")
    memory.add_argument("--scales", default="1000,10000,100000", help="snippet counts, comma-separated")
    memory.add_argument("--queries", type=int, default=200)
    training = sub.add_parser("training", help="personal adapter: training time, throughput, memory, conversion")
    training.add_argument("--examples", type=int, default=200)
    training.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.name == "speed":
        from bench import speed as module

        module.main(args.runs)
    elif args.name == "memory":
        from bench import memory as module

        module.main([int(n) for n in args.scales.split(",")], args.queries)
    elif args.name == "training":
        from bench import training as module

        module.main(args.examples, args.epochs)


if __name__ == "__main__":
    main()
