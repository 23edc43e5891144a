"""`ragdistill.diagnose(...)`: the diagnose verdict as a Python call, on the tiny models and world."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import ragdistill
from ragdistill.errors import ConfigError, InputError


def test_import_ragdistill_stays_cheap():
    code = "import sys, ragdistill; assert 'torch' not in sys.modules and 'ragdistill.analysis' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    assert "diagnose" in dir(ragdistill)
    with pytest.raises(AttributeError):
        ragdistill.no_such_thing  # noqa: B018


def test_diagnose_returns_the_verdict_and_its_numbers(tiny_models, tiny_world, tmp_path):
    from ragdistill import Diagnosis, diagnose

    report = diagnose(
        reader=tiny_models["reader"],
        questions=tiny_world["dev"],
        corpus=tiny_world["corpus"],
        retriever=tiny_models["retriever"],
        n=3,
        k=2,
        device="cpu",
        out=str(tmp_path / "out"),
    )
    assert isinstance(report, Diagnosis)
    assert report.verdict in ("distil from this reader", "fine-tune it first (step 1)")  # no reference: absolute rule
    assert not report.compared_to_reference and report.indicator1 is None and report.indicator2 is None
    assert report.n_instances == 3 and report.percentile == 95
    # the numbers are the ones in indicators.json (what `ragdistill diagnose --out` writes)
    ind = json.loads((tmp_path / "out" / "indicators.json").read_text())
    blk = ind["readers"][tiny_models["reader"]]["answer"]["p95"]
    assert report.answer_lift == blk["lift_mean"] and report.answer_spearman == blk["spearman_mean"]
    assert ind["verdict"][tiny_models["reader"]]["advice"] == report.verdict
    d = report.to_dict()
    json.dumps(d)  # JSON-ready
    assert d["verdict"] == report.verdict and d["indicators"]["readers"]
    text = str(report)
    assert "answer lift" in text and f"verdict: {report.verdict}" in text and "no reference to compare with" in text


def test_diagnose_with_an_index_and_a_reference(tiny_models, tiny_world, tmp_path):
    from ragdistill import diagnose
    from ragdistill.data.corpus import iter_passages
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.retriever import BiEncoderRetriever
    from tests.tiny_models import make_tiny_reader

    retr = BiEncoderRetriever.from_pretrained(tiny_models["retriever"], device="cpu")
    PassageIndex.build(iter_passages(tiny_world["corpus"]), retr, tmp_path / "idx")
    other = make_tiny_reader(tmp_path / "reader2", seed=1)
    report = diagnose(
        reader=str(other),
        questions=tiny_world["dev"],
        index=str(tmp_path / "idx"),
        reference=tiny_models["reader"],
        retriever=tiny_models["retriever"],
        n=3,
        k=2,
        device="cpu",
    )
    assert report.compared_to_reference and report.reference == tiny_models["reader"]
    assert report.verdict in ("distil from this reader", "fine-tune it first (step 1)", "expect no benefit")
    assert f"(against {tiny_models['reader']})" in str(report)


def test_diagnose_bad_input_raises_ragdistill_errors(tiny_models, tiny_world, tmp_path):
    from ragdistill import diagnose

    with pytest.raises(ConfigError, match="index"):
        diagnose(reader=tiny_models["reader"], questions=tiny_world["dev"])  # neither corpus nor index
    with pytest.raises(ConfigError, match="'n'"):
        diagnose(reader=tiny_models["reader"], questions=tiny_world["dev"], corpus=tiny_world["corpus"], n=0)
    with pytest.raises(InputError, match="file not found"):
        diagnose(reader=tiny_models["reader"], questions=str(tmp_path / "missing.jsonl"), corpus=tiny_world["corpus"])
