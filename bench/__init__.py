"""Micro-benchmarks: ``python -m bench`` runs every ``bench_*`` module (see ``__main__``)."""
