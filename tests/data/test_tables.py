"""FlashRAG questions, Parquet files and `datasets` save_to_disk folders as question sets and corpora."""

from __future__ import annotations

import builtins
import json

import pytest

from ragdistill.cli.main import main
from ragdistill.data import detect_format, load_passages, load_questions
from ragdistill.errors import InputError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")

QS = [{"id": f"q{i}", "question": f"who built bridge {i}?", "answers": [f"Ann {i}", "Bo"]} for i in range(5)]
PS = [{"id": i, "title": f"Title {i}", "text": f"bridge {i} was built by Ann {i}"} for i in range(6)]


def _parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_flashrag_question_layout(tmp_path):
    f = tmp_path / "nq_dev.jsonl"
    rows = [
        {"id": "dev_0", "question": "who?", "golden_answers": ["Ann", "Ann"], "metadata": {"x": 1}},
        {"id": "dev_1", "question": "what?", "golden_answers": ["a bridge"]},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert detect_format(f) == "flashrag-qa"
    qs = load_questions(f)
    assert [(q.id, q.answers) for q in qs] == [("dev_0", ["Ann"]), ("dev_1", ["a bridge"])]
    f.write_text(json.dumps({"id": "a", "question": "who?", "golden_answers": []}) + "\n")
    with pytest.raises(InputError, match=r"nq_dev.jsonl, line 1: empty answer list \('golden_answers'\)"):
        load_questions(f)


def test_parquet_questions_and_corpus(tmp_path):
    qf = _parquet(tmp_path / "qs.parquet", QS)
    pf = _parquet(tmp_path / "corpus.parquet", PS)
    assert detect_format(qf) == "qa-jsonl" and detect_format(pf) == "passages-jsonl"
    assert [q.answers for q in load_questions(qf)][0] == ["Ann 0", "Bo"]
    ps = load_passages(pf)
    assert [(p.id, p.title) for p in ps][:2] == [("0", "Title 0"), ("1", "Title 1")]
    fr = _parquet(
        tmp_path / "fr.parquet", [{"id": "x", "question": "q?", "golden_answers": ["a"], "metadata": {"k": "v"}}]
    )
    assert detect_format(fr) == "flashrag-qa" and load_questions(fr)[0].answers == ["a"]


def test_parquet_errors_name_the_row(tmp_path):
    bad = _parquet(tmp_path / "file.parquet", QS[:16] + [{"id": "z", "question": "", "answers": ["a"]}])
    with pytest.raises(InputError) as err:
        load_questions(bad)
    assert str(err.value) == f"{bad}, row 6: empty question ('question')"
    dup = _parquet(tmp_path / "dup.parquet", PS + [PS[2]])
    with pytest.raises(InputError, match=r"dup.parquet, row 7: duplicate passage id '2' \(first at row 3\)"):
        load_passages(dup)
    odd = _parquet(tmp_path / "odd.parquet", [{"foo": 1, "bar": "x"}])
    with pytest.raises(
        InputError, match=r"odd.parquet: is a Parquet file whose columns \['foo', 'bar'\] match no known layout"
    ):
        detect_format(odd)
    with pytest.raises(InputError, match="expected a question set"):
        load_questions(_parquet(tmp_path / "c.parquet", PS))
    with pytest.raises(InputError, match="not 'dpr-tsv'"):
        load_passages(tmp_path / "c.parquet", format="dpr-tsv")


def test_datasets_folders_and_splits(tmp_path):
    ds = datasets.Dataset.from_list(QS)
    ds.save_to_disk(str(tmp_path / "qs_hf"))
    assert detect_format(tmp_path / "qs_hf") == "qa-jsonl"
    assert [q.id for q in load_questions(tmp_path / "qs_hf")] == [f"q{i}" for i in range(5)]
    datasets.DatasetDict({"train": ds, "validation": ds.select([3, 4])}).save_to_disk(str(tmp_path / "dd"))
    assert [q.id for q in load_questions(f"{tmp_path / 'dd'}::validation")] == ["q3", "q4"]
    with pytest.raises(InputError, match=r"DatasetDict with splits train, validation: choose one as .*dd::SPLIT"):
        load_questions(tmp_path / "dd")
    with pytest.raises(InputError, match=r"dd::test: has no split 'test' \(splits: train, validation\)"):
        load_questions(f"{tmp_path / 'dd'}::test")
    datasets.DatasetDict(
        {"corpus": datasets.Dataset.from_list(PS[:3] + [{"id": 9, "title": "t", "text": " "}])}
    ).save_to_disk(str(tmp_path / "corpus_hf"))
    with pytest.raises(InputError, match=r"corpus_hf, row 4: empty passage \('text'\)"):  # a single split is used as is
        load_passages(tmp_path / "corpus_hf")


def test_missing_optional_packages_say_what_to_install(tmp_path, monkeypatch):
    qf = _parquet(tmp_path / "qs.parquet", QS)
    datasets.Dataset.from_list(QS).save_to_disk(str(tmp_path / "qs_hf"))
    real_import = builtins.__import__

    def no_tables(name, *args, **kwargs):
        if name.split(".")[0] in ("pyarrow", "datasets"):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    import importlib

    real_import_module = importlib.import_module
    monkeypatch.setattr(builtins, "__import__", no_tables)
    monkeypatch.setattr(
        importlib,
        "import_module",
        lambda name, *a: (
            no_tables(name) if name.split(".")[0] in ("pyarrow", "datasets") else real_import_module(name, *a)
        ),
    )
    with pytest.raises(
        InputError,
        match=r"qs.parquet: is a Parquet file; reading it needs the optional package 'pyarrow': pip install 'ragdistill\[data\]'",
    ):
        load_questions(qf)
    with pytest.raises(InputError, match=r"needs the optional package 'datasets': pip install 'ragdistill\[data\]'"):
        load_questions(tmp_path / "qs_hf")


def test_data_inspect_recognises_each_kind(tmp_path, capsys):
    fr = tmp_path / "fr.jsonl"
    fr.write_text(json.dumps({"id": "d0", "question": "who?", "golden_answers": ["Ann"], "metadata": {}}) + "\n")
    pf = _parquet(tmp_path / "corpus.parquet", PS)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(QS)}).save_to_disk(str(tmp_path / "dd"))
    cases = [
        (fr, "flashrag-qa", "text", "questions", 1),
        (pf, "passages-jsonl", "parquet", "passages", 6),
        (f"{tmp_path / 'dd'}::train", "qa-jsonl", "dataset", "questions", 5),
    ]
    for path, fmt, container, kind, n in cases:
        assert main(["data", "inspect", str(path), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["format"], report["container"], report[kind]) == (fmt, container, n)
    assert main(["data", "inspect", str(pf)]) == 0
    assert "container: Parquet file" in capsys.readouterr().out
    bad = _parquet(tmp_path / "bad.parquet", [{"question": "q?", "answers": ["a"]}, {"question": "q?", "answers": []}])
    assert main(["data", "inspect", str(bad)]) == 2
    assert f"{bad}, row 2: empty answer list" in capsys.readouterr().err
