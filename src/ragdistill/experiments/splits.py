"""Article-disjoint question splits of a SQuAD file, for SQuAD-open experiments.

SQuAD's dev set is one file holding both the knowledge base (its paragraphs) and the
questions. Splitting its questions at random would put questions about the same article
(often the same paragraph) in train and test, so a reader fine-tuned on train would have
seen the test passages' facts. `split_squad_by_article` assigns whole articles to
train / dev / test (seeded), so no article has questions in two splits, and writes each
split as question JSONL (``{"id", "question", "answers", "article"}``) that every command reads.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from ragdistill.errors import ConfigError, InputError
from ragdistill.utils.io import atomic_file, atomic_write_json, sha256_file

SPLITS = ("train", "dev", "test")
_ARTICLE = re.compile(r"^data\[(\d+)\]")


def is_squad_file(path: str | Path) -> bool:
    """True when the data layer detects `path` as SQuAD JSON."""
    from ragdistill.data.formats import detect_format

    try:
        return detect_format(path) == "squad"
    except InputError:
        return False


def squad_questions_by_article(path: str | Path) -> tuple[list[str], dict[int, list]]:
    """(article titles, {article index: [Question, ...]}) read and validated by the data layer."""
    from ragdistill.data.formats import load_json
    from ragdistill.data.questions import iter_questions_with_location

    path = Path(path)
    doc = load_json(path)
    titles = [
        str(a.get("title", f"article {i}")) if isinstance(a, dict) else f"article {i}"
        for i, a in enumerate(doc.get("data", []) if isinstance(doc, dict) else [])
    ]
    by_article: dict[int, list] = {}
    for where, q in iter_questions_with_location(path, "squad"):
        m = _ARTICLE.match(where.path or "")
        if m is None:  # pragma: no cover - the squad reader always yields data[i] paths
            raise InputError(f"cannot tell the article of question '{q.id}'", path)
        by_article.setdefault(int(m.group(1)), []).append(q)
    return titles, by_article


def plan_squad_split(
    path: str | Path, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> tuple[list[str], dict[int, list], dict[str, list[int]]]:
    """(titles, questions by article, {split: [article index, ...]}): the split, computed without writing.

    `fractions` are the shares of *questions* (train, dev, test) aimed at; articles are
    shuffled with `seed` and test is filled first, then dev, the rest is train, so test and
    train always get at least one article (dev too when there are at least three).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ConfigError("fractions", f"need three non-negative shares (train, dev, test), got {list(fractions)}")
    total_f = float(sum(fractions))
    fr = [f / total_f for f in fractions]
    path = Path(path)
    titles, by_article = squad_questions_by_article(path)
    articles = sorted(by_article)
    if len(articles) < 2:
        raise InputError(
            f"holds questions from {len(articles)} article(s): at least 2 are needed for an article-disjoint "
            "train/test split",
            path,
        )
    order = articles[:]
    random.Random(seed).shuffle(order)
    n_total = sum(len(by_article[a]) for a in articles)
    assign: dict[str, list[int]] = {s: [] for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    pending = list(order)
    for split, share in (("test", fr[2]), ("dev", fr[1])):
        if share <= 0:
            continue
        # articles kept back for the splits filled later: train always, dev when there are enough articles
        reserve = (1 if fr[0] > 0 else 0) + (1 if split == "test" and fr[1] > 0 and len(articles) >= 3 else 0)
        while pending and len(pending) > reserve and (not assign[split] or counts[split] < share * n_total):
            a = pending.pop(0)
            assign[split].append(a)
            counts[split] += len(by_article[a])
    assign["train"] = pending
    if fr[0] > 0 and not assign["train"]:
        raise InputError("too few articles to give the train split one", path)
    return titles, by_article, assign


def split_squad_by_article(
    path: str | Path, out_dir: str | Path, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, Path]:
    """Write train/dev/test question files whose articles are disjoint; returns their paths.

    The split is `plan_squad_split`'s. Within a split the questions are shuffled (seeded), so
    "the first N questions" is a sample of all its articles. ``split.json`` records the
    source's sha256, the seed, the question counts and each split's articles. Files already
    holding the same split are left untouched (their timestamps and hashes stay stable).
    """
    path = Path(path)
    titles, by_article, assign = plan_squad_split(path, fractions, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split in SPLITS:
        qs = [(a, q) for a in assign[split] for q in by_article[a]]
        random.Random(f"{seed}-{split}").shuffle(qs)
        text = "".join(
            json.dumps(
                {
                    "id": q.id,
                    "question": q.question,
                    "answers": list(q.answers),
                    "article": titles[a] if a < len(titles) else str(a),
                },
                ensure_ascii=False,
            )
            + "\n"
            for a, q in qs
        )
        target = out_dir / f"{split}.jsonl"
        if not (target.is_file() and target.read_text(encoding="utf-8") == text):
            with atomic_file(target) as f:
                f.write(text)
        paths[split] = target
    manifest = {
        "source": str(path),
        "source_sha256": sha256_file(path),
        "seed": seed,
        "fractions": list(fractions),
        "questions": {s: sum(len(by_article[a]) for a in assign[s]) for s in SPLITS},
        "articles": {s: [titles[a] if a < len(titles) else str(a) for a in sorted(assign[s])] for s in SPLITS},
        "rule": "whole articles per split (no article in two splits); test filled first, then dev, rest train",
    }
    atomic_write_json(out_dir / "split.json", manifest)
    paths["manifest"] = out_dir / "split.json"
    return paths
