"""ragdistill's benchmark suite (``python -m bench`` or ``make bench``).

Benchmarks are plain modules exposing ``run(quick: bool = False) -> dict`` (a title, row
tables, a ``ratios`` dict and notes) and optionally ``markdown(result) -> str``; the suite in
``bench/__main__.py`` runs them, writes ``bench/results/<date>-<host>.json`` and regenerates
the tables of BENCHMARKS.md. Speed is shown here, never asserted in tests.
"""
