"""Benchmarks: speed, memory and personalization quality, each against a baseline measured in
the same run. Run `python -m bench --help`."""
