"""Article-disjoint SQuAD splits, and reproduce's use of them for SQuAD-open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdistill.errors import InputError
from ragdistill.experiments.plan import Options, build_plan, prepare_data
from ragdistill.experiments.splits import plan_squad_split, split_squad_by_article
from tests.conftest import shared_file


def _squad(path: Path, n_articles: int = 7, seed_q: int = 3) -> Path:
    data = []
    for a in range(n_articles):
        paragraphs = []
        for p in range(2):
            qas = [
                {
                    "id": f"a{a}p{p}q{q}",
                    "question": f"What is fact {q} of topic {a}-{p}?",
                    "answers": [{"text": f"value{a}{p}{q}", "answer_start": 0}],
                }
                for q in range(1 + (a + p + seed_q) % 3)
            ]
            paragraphs.append(
                {"context": f"Topic {a} paragraph {p}: " + " ".join(f"value{a}{p}{q}" for q in range(3)), "qas": qas}
            )
        data.append({"title": f"Article_{a}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_is_article_disjoint_complete_and_seeded(tmp_path):
    src = _squad(tmp_path / "squad.json")
    paths = split_squad_by_article(src, tmp_path / "split", seed=0)
    rows = {s: _read(paths[s]) for s in ("train", "dev", "test")}
    articles = {s: {r["article"] for r in rows[s]} for s in rows}
    assert all(articles[s] for s in rows)  # each split gets at least one article
    assert not (articles["train"] & articles["test"]) and not (articles["train"] & articles["dev"])
    assert not (articles["dev"] & articles["test"])
    ids = [r["id"] for s in rows for r in rows[s]]
    assert (
        len(ids)
        == len(set(ids))
        == sum(len(p["qas"]) for a in json.loads(src.read_text())["data"] for p in a["paragraphs"])
    )
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["questions"] == {s: len(rows[s]) for s in rows}
    assert sorted(manifest["articles"]["test"]) == sorted(articles["test"])
    again = split_squad_by_article(src, tmp_path / "split2", seed=0)
    assert all(paths[s].read_text() == again[s].read_text() for s in ("train", "dev", "test"))
    other = plan_squad_split(src, seed=1)[2]
    assert other != plan_squad_split(src, seed=0)[2] or len(articles["train"]) == 1  # the seed moves articles


def test_two_articles_give_train_and_test(tmp_path):
    src = _squad(tmp_path / "two.json", n_articles=2)
    _, _, assign = plan_squad_split(src)
    assert len(assign["train"]) == 1 and len(assign["test"]) == 1 and assign["dev"] == []
    with pytest.raises(InputError, match="article"):
        plan_squad_split(_squad(tmp_path / "one.json", n_articles=1))


def test_same_squad_file_for_train_and_test_is_split_automatically(tmp_path):
    src = str(_squad(tmp_path / "squad.json"))
    opts = Options(out=tmp_path / "out", corpus=src, questions_train=src, questions_test=src, check_hub=False)
    (ds,) = prepare_data(opts, write=True)
    assert ds.label == "squad-open" and ds.split is not None
    assert "split by article" in " ".join(ds.notes)
    train, test = _read(Path(ds.paths["train"])), _read(Path(ds.paths["test"]))
    assert not ({r["article"] for r in train} & {r["article"] for r in test})
    assert ds.paths["corpus"] == src  # the paragraphs stay the knowledge base
    plan = build_plan(
        Options(out=tmp_path / "dry", corpus=src, questions_train=src, questions_test=src, check_hub=False)
    )
    assert plan.items[0].config.data.train.endswith("squad-by-article/train.jsonl")
    assert plan.items[0].status == "run"  # the split files are planned even though a dry run writes nothing
    assert not (tmp_path / "dry").exists()


def test_split_by_article_flag_needs_squad(tmp_path):
    other = tmp_path / "q.jsonl"
    other.write_text(json.dumps({"question": "q?", "answers": ["a"]}) + "\n")
    with pytest.raises(InputError, match="SQuAD"):
        prepare_data(Options(out=tmp_path, corpus=str(other), split_by_article=True), write=True)


def test_real_squad_dev_split_is_article_disjoint(tmp_path):
    src = shared_file("squad/dev-v1.1.json")
    paths = split_squad_by_article(src, tmp_path / "split")
    manifest = json.loads(paths["manifest"].read_text())
    arts = {s: set(manifest["articles"][s]) for s in ("train", "dev", "test")}
    assert sum(len(a) for a in arts.values()) == 48 and not (arts["train"] & arts["test"])
    assert sum(manifest["questions"].values()) == 10570
    assert 0.15 < manifest["questions"]["test"] / 10570 < 0.3
