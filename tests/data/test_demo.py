"""The bundled demo world: deterministic, well-formed, and built to make retrieval matter."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from ragdistill.data import iter_passages, load_passages, load_questions
from ragdistill.data.demo import DemoConfig, generate_demo_world, normalize, write_demo_world
from ragdistill.errors import ConfigError

SMALL = dict(countries=6, people=8, companies=6, rivers=5, inventions=5)


@pytest.fixture(scope="module")
def world():
    return generate_demo_world(0)


def test_default_sizes_are_in_range(world):
    assert 1000 <= len(world.passages) <= 1500
    n_q = {s: len(q) for s, q in world.questions.items()}
    assert 300 <= sum(n_q.values()) <= 1500
    assert n_q["train"] > n_q["dev"] > 0 and n_q["test"] > 0
    assert len({p.id for p in world.passages}) == len(world.passages)


def test_splits_share_no_fact_and_no_question(world):
    facts = {s: {(world.question_meta[q.id]["entity"], world.question_meta[q.id]["attribute"]) for q in qs}
             for s, qs in world.questions.items()}
    assert not facts["train"] & facts["dev"] and not facts["train"] & facts["test"] and not facts["dev"] & facts["test"]
    texts = [q.question for qs in world.questions.values() for q in qs]
    assert len(texts) == len(set(texts))


def test_each_answer_is_verbatim_in_its_gold_passage_only(world):
    by_id = world.passage_by_id()
    norm = {p.id: normalize(p.as_text()) for p in world.passages}
    corpus = "\x00".join(norm.values())
    for qs in world.questions.values():
        for q in qs:
            gold = by_id[world.gold[q.id]]
            assert q.answers[0] in gold.text  # verbatim span
            for a in q.answers:
                assert normalize(a) in norm[gold.id] and corpus.count(normalize(a)) == 1, (q, a)


def test_gold_titles_and_hard_negatives_share_the_entity(world):
    by_id = world.passage_by_id()
    titles = Counter(p.title for p in world.passages)
    for qs in world.questions.values():
        for q in qs:
            entity = world.question_meta[q.id]["entity"]
            gold = by_id[world.gold[q.id]]
            assert gold.title == entity and entity.split()[0] in gold.text
            assert titles[entity] >= 3  # other passages about the same entity: hard negatives
            assert entity.split()[0] in q.question


def test_questions_are_worded_unlike_their_passages(world):
    # The question's non-name words overlap little with its gold passage (paraphrases, not copies).
    by_id = world.passage_by_id()
    overlaps = []
    for q in world.questions["dev"]:
        gold = by_id[world.gold[q.id]]
        qw = set(re.findall(r"[a-z]+", q.question.lower())) - set(normalize(world.question_meta[q.id]["entity"]).split())
        pw = set(re.findall(r"[a-z]+", gold.text.lower()))
        content = qw - {"what", "which", "who", "when", "where", "how", "is", "was", "the", "of", "in", "did", "does", "a"}
        overlaps.append(len(content & pw) / max(1, len(content)))
    assert sum(overlaps) / len(overlaps) < 0.5


def test_names_are_invented():
    from ragdistill.data.demo import _EXOTIC, _HARD_LETTER, _template_vocab
    from ragdistill.models import resolve

    w = generate_demo_world(3, **SMALL)
    fixed = _template_vocab() | {"river", "mount", "lake", "the", "president"}
    texts = [p.title for p in w.passages] + [q.answers[0] for qs in w.questions.values() for q in qs]
    invented = {t for text in texts for t in re.findall(r"[a-z]+", text.lower()) if t not in fixed}
    assert len(invented) > 100
    for word in invented:
        assert len(word) >= 4 and _HARD_LETTER.search(word) and _EXOTIC.search(word), word
    # None is a whole word of BERT's English vocabulary (the bundled MiniLM tokenizer's).
    english = set((Path(resolve("minilm-l6").path) / "vocab.txt").read_text(encoding="utf-8").split())
    assert not invented & english


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = write_demo_world(tmp_path / "a", seed=5, **SMALL)
    b = write_demo_world(tmp_path / "b", seed=5, **SMALL)
    c = write_demo_world(tmp_path / "c", seed=6, **SMALL)
    assert set(a) == {"corpus", "corpus_tsv", "train", "dev", "test", "readme"}
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key
    assert a["corpus"].read_bytes() != c["corpus"].read_bytes()


def test_files_load_with_the_real_loaders(tmp_path):
    paths = write_demo_world(tmp_path / "demo", seed=1, **SMALL)
    world = generate_demo_world(1, **SMALL)
    assert load_passages(paths["corpus"]) == world.passages
    assert list(iter_passages(paths["corpus_tsv"])) == world.passages
    for split in ("train", "dev", "test"):
        assert load_questions(paths[split]) == world.questions[split]
    assert "seed 1" in paths["readme"].read_text()


def test_generator_uses_no_global_random_state():
    import random

    random.seed(123)
    state = random.getstate()
    a = generate_demo_world(2, **SMALL)
    assert random.getstate() == state
    random.seed(999)
    assert generate_demo_world(2, **SMALL).passages == a.passages


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_properties_hold_for_several_seeds(seed):
    w = generate_demo_world(seed, countries=10, people=10, companies=10, rivers=10, inventions=10, questions_per_fact=2)
    assert sum(len(q) for q in w.questions.values()) == 2 * len(w.facts)  # the check runs inside the generator


@pytest.mark.parametrize("bad,key", [
    (dict(countries=-1), "countries"),
    (dict(questions_per_fact=4), "questions_per_fact"),
    (dict(train_fraction=0.9, dev_fraction=0.2), "train_fraction"),
    (dict(countries=0, people=0, companies=0, rivers=0, inventions=0), "countries"),
    (dict(colours=3), "colours"),
])
def test_bad_sizes_are_config_errors_and_write_nothing(tmp_path, bad, key):
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        write_demo_world(out, seed=0, **bad)
    assert err.value.key == key
    assert not out.exists()


def test_config_defaults_validate():
    DemoConfig().validate()
    with pytest.raises(ConfigError, match="seed"):
        generate_demo_world("x")  # type: ignore[arg-type]
