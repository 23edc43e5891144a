"""The evaluation pipeline with test doubles: hand-computed HR@k/EM/F1, sharding across processes, outputs."""

from __future__ import annotations

import copy
import json
import threading
from types import SimpleNamespace

import pytest

from ragdistill.data.types import Passage, Question
from ragdistill.evaluation.evaluate import evaluate_questions, format_table, generation_sample, write_eval

P = {
    i: Passage(str(i), f"T{i}", text)
    for i, text in enumerate(
        [
            "Paris is the capital of France.",
            "Berlin is in Germany.",
            "The Nile is long.",
            "Rome was not built in a day.",
            "Madrid hosts the Prado.",
            "Oslo is cold.",
        ]
    )
}

RANKING = {  # question -> ranked passage ids
    "capital of France?": [1, 0, 2],  # answer at rank 2
    "longest river?": [2, 3, 4],  # answer at rank 1
    "museum in Madrid?": [0, 1, 2],  # no answer retrieved
}
QS = [
    Question("q1", "capital of France?", ["Paris"]),
    Question("q2", "longest river?", ["the Nile", "Nile River"]),
    Question("q3", "museum in Madrid?", ["Prado"]),
]
PRED = {"capital of France?": "Paris.", "longest river?": "Nile", "museum in Madrid?": "the Louvre museum"}


class FakeIndex:
    def __init__(self):
        self.calls = []

    def retrieve(self, retriever, questions, k):
        self.calls.append((list(questions), k))
        return [[SimpleNamespace(passage=P[i]) for i in RANKING[q][:k]] for q in questions]


class FakeReader:
    def generate(self, questions, passages):
        assert all(len(ps) == 2 for ps in passages)  # k passages reach the reader
        return [PRED[q] for q in questions]


def test_hand_computed_metrics():
    index = FakeIndex()
    out = evaluate_questions(FakeReader(), None, index, QS, k=2, ks=(1, 2, 3), batch_size=2)
    assert index.calls == [(["capital of France?", "longest river?"], 3), (["museum in Madrid?"], 3)]
    m = out.metrics
    assert m["n"] == 3
    assert m["hr@1"] == pytest.approx(1 / 3) and m["hr@2"] == pytest.approx(2 / 3) and m["hr@3"] == pytest.approx(2 / 3)
    assert m["em"] == pytest.approx(2 / 3)  # "Paris." and "Nile" (vs "the Nile") match
    # q3: pred {louvre, museum} vs {prado}: F1 0
    assert m["f1"] == pytest.approx(2 / 3)
    assert [r["hit"] for r in out.records] == [True, True, False]
    assert out.records[0]["retrieved"] == ["1", "0", "2"]


def test_generation_on_a_seeded_sample_keeps_hr_on_every_question():
    asked = []

    class CountingReader(FakeReader):
        def generate(self, questions, passages):
            asked.extend(questions)
            return super().generate(questions, passages)

    out = evaluate_questions(CountingReader(), None, FakeIndex(), QS, k=2, ks=(1, 2), batch_size=2, generate_sample=2)
    chosen = generation_sample(3, 2)
    assert len(chosen) == 2 and chosen == generation_sample(3, 2)  # the same questions in every run
    assert sorted(asked) == sorted(QS[i].question for i in chosen)  # only those are generated
    m = out.metrics
    assert m["n"] == 3 and m["n_generated"] == 2 and m["hr@2"] == pytest.approx(2 / 3)  # HR@k: all three
    by_pos = {i: r for i, r in enumerate(out.records)}
    assert all(("em" in by_pos[i]) == (i in chosen) for i in range(3))
    want_em = {0: 1.0, 1: 1.0, 2: 0.0}  # q1 and q2 answered right, q3 wrong (see test_hand_computed_metrics)
    assert m["em"] == pytest.approx(sum(want_em[i] for i in chosen) / 2)
    assert generation_sample(3, 0) == generation_sample(3, 5) == {0, 1, 2}  # 0 or more than n: all


def test_retrieval_only_needs_no_reader():
    out = evaluate_questions(None, None, FakeIndex(), QS, k=2, ks=(1, 5), generate=False)
    assert set(out.metrics) == {"n", "hr@1", "hr@5"} and "prediction" not in out.records[0]


class ThreadDist:
    """One of two 'processes' run as threads: gather_objects is a real rendezvous, in rank order."""

    world_size = 2

    def __init__(self, rank, shared, barrier):
        self.rank, self.shared, self.barrier = rank, shared, barrier

    def gather_objects(self, items):
        self.shared[self.rank] = copy.deepcopy(list(items))
        self.barrier.wait(timeout=30)
        return copy.deepcopy(self.shared[0] + self.shared[1])  # processes receive copies


def test_sharded_evaluation_equals_single_process():
    single = evaluate_questions(FakeReader(), None, FakeIndex(), QS, k=2, ks=(1, 2, 3))
    shared, barrier, results = {}, threading.Barrier(2), {}

    def worker(rank):
        results[rank] = evaluate_questions(
            FakeReader(), None, FakeIndex(), QS, k=2, ks=(1, 2, 3), dist=ThreadDist(rank, shared, barrier)
        )

    threads = [threading.Thread(target=worker, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["id"] for r in shared[0]] == ["q1", "q3"] and [r["id"] for r in shared[1]] == ["q2"]  # strided shares
    for rank in (0, 1):
        assert results[rank].metrics == single.metrics
        assert results[rank].records == single.records


def test_outputs_are_written(tmp_path):
    out = evaluate_questions(FakeReader(), None, FakeIndex(), QS, k=2, ks=(1, 5, 20))
    write_eval(tmp_path, out, info={"k": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == out.metrics
    rows = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert rows[1] == {
        "id": "q2",
        "question": "longest river?",
        "answers": ["the Nile", "Nile River"],
        "prediction": "Nile",
        "retrieved": ["2", "3", "4"],
        "hit": True,
        "hit_flags": [True, False, False],
        "em": 1.0,
        "f1": 1.0,
    }
    assert json.loads((tmp_path / "eval_info.json").read_text())["k"] == 2
    table = format_table(out.metrics)
    assert "| n | HR@1 | HR@5 | HR@20 | EM | F1 |" in table and "66.67" in table
