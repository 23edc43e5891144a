"""One line of progress for a person, printed so that it does not break a tqdm bar on screen."""

from __future__ import annotations


def say(msg: str) -> None:
    """Print `msg` above any running tqdm bars (plain print where tqdm is missing)."""
    try:
        from tqdm.auto import tqdm

        tqdm.write(msg)
    except ImportError:  # pragma: no cover
        print(msg, flush=True)
