"""Reproducible benchmarks; run one as a module from the repository root
(``.venv/bin/python -m bench.matching``). What they share is ``bench.harness``."""
