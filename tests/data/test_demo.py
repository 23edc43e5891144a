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

# sha256 of the version-1 files for seed 0, computed with the code before version 2 existed.
V1_SEED0_SHA256 = {
    "README.md": "82e2e574240cd06c0e2ada79e9e70e9323d32dabe427cddeb9b444a087fb1f85",
    "corpus.jsonl": "10fb5f8a9c77d4be919a07db033f32094faafa2edf042678dd13c8a66fb5b2f7",
    "corpus.tsv": "f3d4a346ae2a8ea0706d6848f06bc707a826683af7614dabd84af423e380ee4b",
    "dev.jsonl": "a4920d30a850b87889db35cc4131ce3240cab36fcd5f535e1ef7f421b8ddd617",
    "test.jsonl": "ea9fd0154da98af0580684b908b71ec067cd0e271484e2d439119380ca69f43c",
    "train.jsonl": "ed32e6a44c5d7755fcf793342a13e7d4ed29c43272b78729d6ed0ddbe13c7eef",
}


@pytest.fixture(scope="module")
def world():
    return generate_demo_world(0)


@pytest.fixture(scope="module")
def world_v1():
    return generate_demo_world(0, DemoConfig(version=1))


def test_default_is_version_2_with_sizes_to_measure(world):
    assert world.config.version == 2
    n_q = {s: len(q) for s, q in world.questions.items()}
    assert n_q["train"] >= 1500 and n_q["test"] >= 500 and n_q["dev"] >= 200
    assert 1000 <= len(world.passages) <= 3500  # indexing with the bundled MiniLM stays short
    assert len({p.id for p in world.passages}) == len(world.passages)
    # one or two short sentences: five fit a 128-token prompt budget
    assert max(len(p.as_text().split()) for p in world.passages) <= 25


def test_version_1_is_byte_for_byte_the_first_world(world_v1, tmp_path):
    import hashlib

    from ragdistill.data.demo import demo_files

    files = demo_files(world_v1)
    assert {n: hashlib.sha256(files[n].encode()).hexdigest() for n in V1_SEED0_SHA256} == V1_SEED0_SHA256
    paths = write_demo_world(tmp_path / "v1", seed=0, version=1)
    assert {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items() if p.name in V1_SEED0_SHA256
    } == V1_SEED0_SHA256


def test_manifest_records_version_seed_counts_and_hashes(tmp_path):
    import hashlib
    import json

    paths = write_demo_world(tmp_path / "w", seed=4, **SMALL)
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["version"] == 2 and manifest["seed"] == 4
    assert set(manifest["files"]) == {
        "README.md",
        "corpus.jsonl",
        "corpus.tsv",
        "train.jsonl",
        "dev.jsonl",
        "test.jsonl",
    }
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "w" / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["counts"]["passages"] == len(load_passages(paths["corpus"]))
    for split in ("train", "dev", "test"):
        assert manifest["counts"][split] == len(load_questions(paths[split]))
    assert "version 2" in paths["readme"].read_text()


def test_each_answer_is_in_its_gold_passage_only_by_token_match(world):
    # the whole default world, with the project's has_answer (DPR token match)
    from ragdistill.retrieval.metrics import dpr_tokens, has_answer

    by_word: dict[str, list] = {}
    for p in world.passages:
        for tok in set(dpr_tokens(p.as_text())):
            by_word.setdefault(tok, []).append(p)
    by_id = world.passage_by_id()
    for qs in world.questions.values():
        for q in qs:
            gold = world.gold[q.id]
            assert q.answers[0] in by_id[gold].text
            for a in q.answers:
                toks = dpr_tokens(a)
                found = {p.id for t in toks for p in by_word.get(t, []) if has_answer(p.as_text(), [a])}
                assert found == {gold}, (q, a, found)


def test_hard_negatives_share_the_entity_or_the_attribute(world):
    titles = Counter(p.title for p in world.passages)
    by_id = world.passage_by_id()
    kinds = Counter(world.question_meta[q.id]["kind"] for q in world.questions["test"])
    assert len(kinds) == 5
    for q in world.questions["test"]:
        meta = world.question_meta[q.id]
        gold = by_id[world.gold[q.id]]
        assert gold.title.lower() == meta["entity"].lower()
        assert titles[gold.title] >= 4  # the entity's other facts (and near-duplicates) share the title
        assert meta["entity"].split()[0].lower() in q.question.lower()
    assert len(world.passages) - len(world.facts) > 0.3 * len(world.facts)  # near-duplicates, fillers, mentions


@pytest.mark.parametrize("version", [1, 2])
def test_splits_share_no_fact_and_no_question(version, world, world_v1):
    world = world if version == 2 else world_v1
    facts = {
        s: {(world.question_meta[q.id]["entity"], world.question_meta[q.id]["attribute"]) for q in qs}
        for s, qs in world.questions.items()
    }
    assert not facts["train"] & facts["dev"] and not facts["train"] & facts["test"] and not facts["dev"] & facts["test"]
    texts = [q.question for qs in world.questions.values() for q in qs]
    assert len(texts) == len(set(texts))


def test_each_answer_is_verbatim_in_its_gold_passage_only_v1(world_v1):
    world = world_v1
    by_id = world.passage_by_id()
    norm = {p.id: normalize(p.as_text()) for p in world.passages}
    corpus = "\x00".join(norm.values())
    for qs in world.questions.values():
        for q in qs:
            gold = by_id[world.gold[q.id]]
            assert q.answers[0] in gold.text  # verbatim span
            for a in q.answers:
                assert normalize(a) in norm[gold.id] and corpus.count(normalize(a)) == 1, (q, a)


def test_gold_titles_and_hard_negatives_share_the_entity_v1(world_v1):
    world = world_v1
    by_id = world.passage_by_id()
    titles = Counter(p.title for p in world.passages)
    for qs in world.questions.values():
        for q in qs:
            entity = world.question_meta[q.id]["entity"]
            gold = by_id[world.gold[q.id]]
            assert gold.title == entity and entity.split()[0] in gold.text
            assert titles[entity] >= 3  # other passages about the same entity: hard negatives
            assert entity.split()[0] in q.question


@pytest.mark.parametrize("version", [1, 2])
def test_questions_are_worded_unlike_their_passages(version, world, world_v1):
    world = world if version == 2 else world_v1
    # The question's non-name words overlap little with its gold passage (paraphrases, not copies).
    by_id = world.passage_by_id()
    overlaps = []
    for q in world.questions["dev"]:
        gold = by_id[world.gold[q.id]]
        qw = set(re.findall(r"[a-z]+", q.question.lower())) - set(
            normalize(world.question_meta[q.id]["entity"]).split()
        )
        pw = set(re.findall(r"[a-z]+", gold.text.lower()))
        content = qw - {
            "what",
            "which",
            "who",
            "when",
            "where",
            "how",
            "is",
            "was",
            "the",
            "of",
            "in",
            "did",
            "does",
            "a",
        }
        overlaps.append(len(content & pw) / max(1, len(content)))
    assert sum(overlaps) / len(overlaps) < 0.5


# Words a question template may share with the passage templates: function words and verbs, never
# a noun (the nouns are the question-related indicator's group G; an exact copy in a passage is a
# token with similarity 1, and ties at 1 make Spearman's rho undefined on the top 5 % of tokens).
_SHARED_OK = set(
    """are best built every famous first for have in into is its known lies loved made most of on runs taught the
through to under was where which who""".split()
)


def test_v2_question_words_never_occur_in_passage_templates():
    from ragdistill.data import demo_words as w

    def words(texts):
        return {x for t in texts for x in re.findall(r"[a-z]+", re.sub(r"\{[A-Z]\}", " ", t).lower())}

    passage_words = words(
        [t for attrs in w.ATTRIBUTES_V2.values() for a in attrs for t in a["passages"] + a["near"]]
        + [t for ts in (*w.FILLERS_V2.values(), *w.MENTIONS_V2.values()) for t in ts]
        + list(w.TAILS_V2)
        + list(w.REFER.values())
    )
    question_words = words([q for attrs in w.ATTRIBUTES_V2.values() for a in attrs for q in a["questions"]])
    assert question_words & passage_words <= _SHARED_OK, sorted(question_words & passage_words - _SHARED_OK)
    # entity names are no template word either (case differs, but the retriever is uncased)
    names = {n.lower() for n in (*w.SURNAME_ENTITIES, *w.WORD_ENTITIES)}
    assert not names & (passage_words | question_words)


def test_v2_entity_named_once_per_passage_and_in_few_passages(world):
    # A passage names its entity in the title only, and at most one other entity in passing.
    from ragdistill.data import demo_words as w

    names = set(w.SURNAME_ENTITIES) | set(w.WORD_ENTITIES)
    count: Counter = Counter()
    for p in world.passages:
        assert p.title in names and " " not in p.title
        words = re.findall(r"[A-Za-z]+", p.text)
        assert p.title not in words, p
        mentioned = [x for x in words if x in names]
        assert len(mentioned) <= 1, p
        count.update([p.title, *mentioned])
    facts_per_entity = Counter(f.entity for f in world.facts)
    assert set(facts_per_entity.values()) == {4}
    # so five retrieved passages hold at most five copies of the name, and they are long enough
    # (~24 reader tokens each, >= 14 words) that five copies stay under 5 % of the passage tokens
    assert min(len(p.as_text().split()) for p in world.passages) >= 14


def test_v2_entity_names_are_one_reader_token():
    from ragdistill.data import demo_words as w
    from ragdistill.models import load_tokenizer

    try:
        tok = load_tokenizer("smollm2-135m")
    except Exception as exc:  # pragma: no cover - the bundled reader is not installed
        pytest.skip(f"bundled reader tokenizer unavailable: {exc}")
    names = (*w.SURNAME_ENTITIES, *w.WORD_ENTITIES)
    assert len(set(names)) == len(names)
    long = [n for n in names if len(tok(" " + n, add_special_tokens=False)["input_ids"]) != 1]
    assert not long


def test_v1_names_are_invented():
    from ragdistill.data.demo import _EXOTIC, _HARD_LETTER, _template_vocab
    from ragdistill.models import resolve

    w = generate_demo_world(3, version=1, **SMALL)
    fixed = _template_vocab() | {"river", "mount", "lake", "the", "president"}
    texts = [p.title for p in w.passages] + [q.answers[0] for qs in w.questions.values() for q in qs]
    invented = {t for text in texts for t in re.findall(r"[a-z]+", text.lower()) if t not in fixed}
    assert len(invented) > 100
    for word in invented:
        assert len(word) >= 4 and _HARD_LETTER.search(word) and _EXOTIC.search(word), word
    # None is a whole word of BERT's English vocabulary (the bundled MiniLM tokenizer's).
    english = set((Path(resolve("minilm-l6").path) / "vocab.txt").read_text(encoding="utf-8").split())
    assert not invented & english


def test_v2_names_are_real_words():
    from ragdistill.data import demo_words

    w = generate_demo_world(3, **SMALL)
    people = [
        q.answers[0]
        for qs in w.questions.values()
        for q in qs
        if " " in q.answers[0] and q.answers[0].split()[0] in demo_words.FIRST_NAMES
    ]
    assert people and all(p.split()[1] in demo_words.SURNAMES for p in people)
    assert len(set(demo_words.FIRST_NAMES)) == len(demo_words.FIRST_NAMES) and not set(demo_words.FIRST_NAMES) & set(
        demo_words.SURNAMES
    )


@pytest.mark.parametrize("version", [1, 2])
def test_same_seed_same_bytes_other_seed_differs(tmp_path, version):
    a = write_demo_world(tmp_path / "a", seed=5, version=version, **SMALL)
    b = write_demo_world(tmp_path / "b", seed=5, version=version, **SMALL)
    c = write_demo_world(tmp_path / "c", seed=6, version=version, **SMALL)
    assert set(a) == {"corpus", "corpus_tsv", "train", "dev", "test", "readme", "manifest"}
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
@pytest.mark.parametrize("version", [1, 2])
def test_properties_hold_for_several_seeds(seed, version):
    w = generate_demo_world(
        seed, version=version, countries=10, people=10, companies=10, rivers=10, inventions=10, questions_per_fact=2
    )
    assert sum(len(q) for q in w.questions.values()) == 2 * len(w.facts)  # the check runs inside the generator


@pytest.mark.parametrize(
    "bad,key",
    [
        (dict(countries=-1), "countries"),
        (dict(questions_per_fact=4), "questions_per_fact"),
        (dict(train_fraction=0.9, dev_fraction=0.2), "train_fraction"),
        (dict(countries=0, people=0, companies=0, rivers=0, inventions=0), "countries"),
        (dict(colours=3), "colours"),
        (dict(version=3), "version"),
        (dict(near_duplicate_prob=1.5), "near_duplicate_prob"),
        (dict(people=100, companies=100), "people"),  # more than the one-token surname pool
    ],
)
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


def test_cli_version_option_writes_that_version(tmp_path, capsys):
    import json

    from ragdistill.cli.main import main

    small = ["--countries", "2", "--people", "2", "--companies", "2", "--rivers", "2", "--inventions", "2"]
    assert main(["data", "demo", "--out", str(tmp_path / "v1"), "--version", "1", *small]) == 0
    assert main(["data", "demo", "--out", str(tmp_path / "v2"), *small]) == 0
    assert json.loads((tmp_path / "v1" / "manifest.json").read_text())["version"] == 1
    assert json.loads((tmp_path / "v2" / "manifest.json").read_text())["version"] == 2
    assert "version 2" in capsys.readouterr().out


@pytest.mark.slow
def test_bundled_minilm_leaves_room_on_v2_test(tmp_path):
    """HR@1 in [35, 60] and HR@5 in [60, 85] with minilm-l6 and exact search (the design targets)."""
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.metrics import hits_at_k
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    w = generate_demo_world(0)
    retr = BiEncoderRetriever.from_pretrained("minilm-l6")
    index = PassageIndex.build(w.passages, retr, tmp_path / "idx", progress=False)
    test = w.questions["test"]
    hits = index.retrieve(retr, [q.question for q in test], 5)
    hr = hits_at_k([[h.passage.as_text() for h in hs] for hs in hits], [q.answers for q in test], ks=(1, 5))
    hr = {k: v * 100 if v <= 1 else v for k, v in hr.items()}
    assert 35 <= hr["hr@1"] <= 60 and 60 <= hr["hr@5"] <= 85, hr
