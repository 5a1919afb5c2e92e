"""python -m bench <benchmark> [options]"""

from __future__ import annotations

import argparse


def main() -> None:
    import os

    from bench.common import RESULTS, end_on_kill_as_on_ctrl_c

    end_on_kill_as_on_ctrl_c()
    # Every benchmark runs in temporary data folders; the public corpus is fetched once.
    os.environ.setdefault("MYNA_CORPUS_CACHE", str(RESULTS / "cache"))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    speed = sub.add_parser("speed", help="chat path: load, first token, decode, cold and warm ask, chat window")
    speed.add_argument("--runs", type=int, default=5)
    speed.add_argument(
        "--no-contention", action="store_true", help="skip the chat beside a running `myna personalize` (minutes)"
    )
    memory = sub.add_parser("memory", help="memory: ingest throughput, retrieval latency, peak memory")
    memory.add_argument("--scales", default="1000,10000,100000", help="snippet counts, comma-separated")
    memory.add_argument("--queries", type=int, default=200)
    memory.add_argument("--fresh", action="store_true", help="re-import instead of reusing the kept databases")
    memory.add_argument("--no-embedders", action="store_true", help="skip the embedders side by side (8 minutes)")
    training = sub.add_parser("training", help="personal adapter: training time, throughput, memory, conversion")
    training.add_argument("--examples", type=int, default=200)
    training.add_argument("--epochs", type=int, default=2)
    personalize = sub.add_parser("personalize", help="nightly merge: wall time, memory, evaluation backends")
    personalize.add_argument(
        "--budget", type=int, help="candidates each search tries (default: the shipped one, PersonalizeConfig)"
    )
    personalize.add_argument("--adapters", type=int, default=8)
    personalize.add_argument("--held-out", type=int, default=50)
    personalize.add_argument(
        "--objectives",
        help="comma-separated, of shipped, published, excess, likelihood, 'published per layer', "
        "'published 3 sharers' (the first is the one the others are compared with)",
    )
    personalize.add_argument("--users", help="comma-separated accounts to personalize for (default reuters_health)")
    personalize.add_argument("--merge-only", action="store_true", help="no own adapter trained on top of the merge")
    personalize.add_argument("--no-rates", action="store_true", help="skip candidate evaluations per minute")
    personalize.add_argument(
        "--save-as", default="personalize", help="results file name in bench/results (default personalize)"
    )
    personalize.add_argument(
        "--next-nights",
        action="store_true",
        help="then the next nights in the same folder: nothing new, and a few more history items",
    )
    lamp = sub.add_parser("lamp", help="every personalization method side by side on real per-author data")
    lamp.add_argument("--quick", action="store_true", help="a few users and questions (minutes, for CI)")
    lamp.add_argument("--tasks", help="LaMP_4,LaMP_7 (the default)")
    lamp.add_argument("--lamp", nargs=2, metavar=("QUESTIONS", "OUTPUTS"), help="a real LaMP questions/outputs pair")
    lamp.add_argument(
        "--methods",
        metavar="REGEX",
        help="only the methods whose name matches (with non-personalized), e.g. 'RAG|^OPPU'; "
        "no privacy or data-amount stages; results go to a folder of their own",
    )
    lamp.add_argument(
        "--users", type=int, metavar="N", help="a reproducible sample of N users (of a large LaMP split, say)"
    )
    lamp.add_argument("--seed", type=int, default=0, help="which sample --users draws (default 0)")
    lamp.add_argument(
        "--questions",
        type=int,
        metavar="N",
        help="each user's N newest items are asked (default 8; more narrows the intervals); results go to "
        "a folder of their own",
    )
    lamp.add_argument(
        "--built-users",
        type=int,
        metavar="N",
        help="the built-in datasets with N users instead of 4 (LaMP_4 has up to 9, LaMP_7 up to 10 accounts still tweeting): each "
        "user's community adapters are the other users', so more users give the merges more to choose from; "
        "results go to a folder of their own",
    )
    lamp.add_argument(
        "--histories",
        metavar="SIZES",
        help="each user's profile cut to its newest SIZES items in turn, e.g. 6,24,48,60,96: small histories, "
        "where the cold start and the nightly gate decide; results go to a folder of their own",
    )
    lamp.add_argument(
        "--nightly-variant",
        action="append",
        metavar="OPTIONS",
        help="also the nightly run with these options instead of the shipped ones, e.g. budget=12,max_adapters=3 "
        "(repeatable): rows 'Myna's nightly, budget 12, ...' beside the shipped one, with their time per user",
    )
    lamp.add_argument(
        "--rescore",
        action="store_true",
        help="score the stored answers of the run these options made again with this version (new comparisons "
        "without redoing a long run); times and privacy figures stay as measured",
    )
    lamp.add_argument(
        "--join",
        metavar="RESULTS_JSON",
        help="with --rescore: add another run's rows (same questions, e.g. another code version) to the report, "
        "compared question by question; refused unless the rows both runs have answered alike",
    )
    conversation = sub.add_parser(
        "conversation", help="conversation memory: facts told in chat, updates, preferences, 'I don't know'"
    )
    conversation.add_argument("--quick", action="store_true", help="two people, before and default (for CI)")
    conversation.add_argument("--variants", help="comma-separated variants (see bench/conversation.py)")
    conversation.add_argument(
        "--no-model-extractor", action="store_true", help="skip the default model as extractor (two minutes)"
    )
    versions = sub.add_parser("versions", help="cold myna ask of this checkout beside an earlier commit, in one run")
    versions.add_argument("--against", default="HEAD", help="the earlier commit (default HEAD, the last commit)")
    versions.add_argument("--runs", type=int, default=7)
    cluster = sub.add_parser("cluster", help="the LaMP benchmark in one process and on a Ray cluster, side by side")
    cluster.add_argument("--users", type=int, default=6)
    cluster.add_argument("--ray", default="local", help="the cluster: 'local' (started for the run) or HOST:PORT")
    lamp.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run each user's adapters, merges and answers as tasks on this Ray cluster (HOST:PORT, 'auto' or "
        "'local'); needs pip install 'myna[cluster]'",
    )
    recall = sub.add_parser("recall", help="fact recall: planted notes among real text, asked through myna ask")
    recall.add_argument("--quick", action="store_true", help="16 facts, 3 layouts, no adapter (for CI)")
    recall.add_argument("--variants", help="comma-separated prompt variants (see bench/recall.py)")
    recall.add_argument("--no-adapter", action="store_true", help="the bare model only")
    args = parser.parse_args()
    if args.name == "speed":
        from bench import speed as module

        module.main(args.runs, not args.no_contention)
    elif args.name == "memory":
        from bench import memory as module

        module.main([int(n) for n in args.scales.split(",")], args.queries, args.fresh, not args.no_embedders)
    elif args.name == "training":
        from bench import training as module

        module.main(args.examples, args.epochs)
    elif args.name == "personalize":
        from bench import personalize as module

        module.main(
            args.budget,
            args.adapters,
            args.held_out,
            args.objectives.split(",") if args.objectives else None,
            args.users.split(",") if args.users else None,
            args.merge_only,
            not args.no_rates,
            args.save_as,
            args.next_nights,
        )
    elif args.name == "recall":
        from bench import recall as module

        module.main(args.quick, args.variants.split(",") if args.variants else None, not args.no_adapter)
    elif args.name == "conversation":
        from bench import conversation as module

        module.main(args.quick, args.variants.split(",") if args.variants else None, not args.no_model_extractor)
    elif args.name == "versions":
        from bench import versions as module

        module.main(args.against, args.runs)
    elif args.name == "cluster":
        from bench import cluster as module

        module.main(args.users, args.ray)
    elif args.name == "lamp":
        from pathlib import Path

        from bench.lamp import run as module

        module.main(
            args.quick,
            args.tasks.split(",") if args.tasks else None,
            tuple(Path(p) for p in args.lamp) if args.lamp else None,
            args.methods,
            (args.users, args.seed) if args.users is not None else None,
            args.ray,
            args.questions,
            args.rescore,
            args.built_users,
            _sizes(args.histories) if args.histories else (),
            tuple(args.nightly_variant or ()),
            Path(args.join) if args.join else None,
        )


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SystemExit(f"--histories {text}: give item counts separated by commas, e.g. 6,24,48,60,96.") from None


if __name__ == "__main__":
    main()
