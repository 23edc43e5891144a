"""The benchmark suite's plumbing: CLI, table rendering, and the formulas its projections rest on.

Benchmarks are not tests: nothing here times anything. These check that `python -m bench`
starts, that a fixed results dict renders to the expected Markdown, and that the FLOP
counts, growth exponents and paper-scale arithmetic match hand or reference computations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench import __main__ as suite  # noqa: E402
from bench import bench_gemm, bench_scale  # noqa: E402
from bench.common import fmt_value, md_table, ratio, run_isolated  # noqa: E402


def test_help_runs_and_lists_every_benchmark():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("gemm", "retrieval", "attention", "training", "scale", "ig", "--quick", "--only", "--out"):
        assert name in proc.stdout


def test_unknown_benchmark_name_is_refused():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nosuch", "--no-table"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "unknown benchmark" in proc.stderr and "nosuch" in proc.stderr


def test_fmt_value_and_md_table():
    assert fmt_value(None) == "—"
    assert fmt_value(float("nan")) == "—"
    assert fmt_value(1234567) == "1,234,567"
    assert fmt_value(0.012345) == "0.0123"
    assert fmt_value(3.14159) == "3.14"
    assert fmt_value(42.42) == "42.4"
    assert fmt_value(123456.7) == "123,457"
    assert fmt_value("a|b") == "a\\|b"
    table = md_table([{"n": 10, "x": 0.5, "s": "flat"}, {"n": 2000, "x": None, "s": "ivf"}])
    assert table.splitlines() == [
        "| n | x | s |",
        "|---:|---:|---|",
        "| 10 | 0.5 | flat |",
        "| 2,000 | — | ivf |",
    ]
    assert ratio(1.0, 0.0) is None and ratio(3.0, 2.0) == 1.5


FIXED = {
    "date": "2026-01-02T03:04:05+00:00",
    "command": "python -m bench",
    "machine": {
        "host": "box",
        "cpu": "Test CPU",
        "cores": 2,
        "usable_cores": 2,
        "memory_gb": 8.0,
        "torch_threads": 2,
        "gpu": None,
    },
    "versions": {"python": "3.11.0", "torch": "2.13.0"},
    "git": {"commit": "0123456789abcdef", "dirty": False},
    "benchmarks": {
        "custom": {
            "status": "ok",
            "seconds": 3.0,
            "quick": False,
            "result": {
                "title": "A custom benchmark",
                "rows": [{"what": "a", "speed": 1500.0}],
                "ratios": {"a / b": 2.5},
                "notes": ["a note"],
            },
        },
        "training": {"status": "error", "seconds": 1.0, "error": "RuntimeError: boom"},
    },
}


def test_render_results_from_a_fixed_results_dict():
    text = suite.render_results(FIXED)
    assert "Test CPU, 2 cores" in text and "GPU: none" in text
    assert "torch 2.13.0" in text and "`python -m bench`" in text and "`0123456789ab`" in text
    assert "| custom | a / b | 2.50 |" in text  # the all-ratios table
    assert "### custom: A custom benchmark" in text
    assert "| what | speed |" in text and "| a | 1,500 |" in text  # generic renderer
    assert "- a note" in text
    assert "**failed:** `RuntimeError: boom`" in text


def test_update_markdown_rewrites_only_the_generated_blocks(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    begin, end = suite.BEGIN.format(name="results"), suite.END.format(name="results")
    path.write_text(f"# Title\n\nprose before\n\n{begin}\nold table\n{end}\n\nprose after\n")
    suite.update_markdown(path, FIXED)
    first = path.read_text()
    assert "old table" not in first and "prose before" in first and "prose after" in first
    assert first.count(begin) == 1 and "| custom | a / b | 2.50 |" in first
    assert suite.BEGIN.format(name="closing") in first  # missing blocks are appended
    suite.update_markdown(path, FIXED)
    assert path.read_text() == first  # idempotent


def test_merged_view_borrows_missing_benchmarks_from_older_full_runs(tmp_path):
    old = dict(FIXED, benchmarks={"gemm": {"status": "ok", "seconds": 1, "result": {"ratios": {"x": 1.0}}}})
    (tmp_path / "2026-01-01-box.json").write_text(json.dumps(old))
    quick = dict(FIXED, quick=True, benchmarks={"scale": {"status": "ok", "seconds": 1, "result": {}}})
    (tmp_path / "2026-01-01-box-quick.json").write_text(json.dumps(quick))
    current = {
        "date": "now",
        "command": "python -m bench --only training",
        "benchmarks": {"training": {"status": "ok", "seconds": 1, "result": {}}},
    }
    view = suite.merged_view(current, tmp_path)
    assert list(view["benchmarks"]) == ["gemm", "training", "scale"]  # suite order
    assert view["benchmarks"]["gemm"]["run"]["file"] == "2026-01-01-box.json"
    assert view["benchmarks"]["scale"]["quick"] is True  # a quick result only where no full one
    assert "training" not in json.dumps(view["benchmarks"]["training"].get("run", {}).get("file", ""))


def test_merged_view_takes_the_run_with_the_latest_recorded_date_not_the_newest_file(tmp_path):
    """A fresh clone gives every results file the same mtime: the date each run records decides."""
    import os

    def result(date, ratio):
        return dict(
            FIXED, date=date, benchmarks={"gemm": {"status": "ok", "seconds": 1, "result": {"ratios": {"x": ratio}}}}
        )

    (tmp_path / "b-newer-run.json").write_text(json.dumps(result("2026-02-01T00:00:00+00:00", 2.0)))
    (tmp_path / "a-older-run.json").write_text(json.dumps(result("2026-01-01T00:00:00+00:00", 1.0)))
    (tmp_path / "probe.json").write_text(json.dumps({"rows": []}))  # no date: after the dated runs
    os.utime(tmp_path / "b-newer-run.json", (1, 1))  # its file looks the oldest
    assert [p.name for p, _ in suite.newest_first(tmp_path)][:2] == ["b-newer-run.json", "a-older-run.json"]
    view = suite.merged_view({"date": "now", "benchmarks": {}}, tmp_path)
    assert view["benchmarks"]["gemm"]["run"]["file"] == "b-newer-run.json"
    assert view["benchmarks"]["gemm"]["result"]["ratios"]["x"] == 2.0


def test_json_safe_turns_nan_into_null():
    out = suite._json_safe({"a": float("nan"), "b": (1, float("inf")), "c": Path("x")})
    assert json.loads(json.dumps(out, allow_nan=False)) == {"a": None, "b": [1, None], "c": "x"}


def test_reader_flops_match_torch_flop_counter():
    """Analytic 2·P·T + 4·L·d·T² (forward) and 3× (forward+backward) against torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    batch, seq = 2, 16
    ids = torch.randint(0, 128, (batch, seq))
    expected = bench_gemm.reader_flops(model, batch, seq)
    p = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert expected["forward"] == 2 * p * batch * seq + 4 * 2 * 64 * seq * batch * seq
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            model(input_ids=ids)
    assert fwd.get_total_flops() == pytest.approx(expected["forward"], rel=1e-9)
    with FlopCounterMode(display=False) as both:
        model(input_ids=ids, labels=ids).loss.backward()
    assert both.get_total_flops() == pytest.approx(expected["forward_backward"], rel=0.02)


def test_numpy_topk_matches_a_full_sort():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    scores, rows = bench_scale.numpy_topk(x, q, 5)
    full = q @ x.T
    ref = np.argsort(-full, axis=1)[:, :5]
    np.testing.assert_array_equal(rows, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref, axis=1), rtol=1e-6)


def test_ivf_nlist_keeps_39_training_points_per_cell():
    assert bench_scale.ivf_nlist(10_000) == 256
    assert bench_scale.ivf_nlist(100_000) == 1024
    assert bench_scale.ivf_nlist(1_000_000) == 1024
    assert bench_scale.ivf_nlist(50) == 1
    for n in (100, 5000, 77_777):
        assert bench_scale.ivf_nlist(n) * 39 <= n


def test_index_config_small_flat_and_ivfpq():
    flat = bench_scale.index_config(n=3000, d=32, kind="Flat", nq=16, k=10, repeats=1)
    assert flat["recall1_at_k"] == 1.0 and flat["recall_k_at_k"] == 1.0  # exact search agrees with numpy
    assert flat["bytes_per_vector"] == 32 * 4
    ivf = bench_scale.index_config(n=3000, d=32, kind="IVF-PQ", nq=16, k=10, pq_m=8, train_sample=3000, repeats=1)
    assert ivf["index"] == "IVF64,PQ8"
    assert ivf["bytes_per_vector"] == pytest.approx(8 + 8 + (64 * 32 * 4 + 32 * 256 * 4) / 3000)
    assert 0.0 <= ivf["recall_k_at_k"] <= 1.0 and ivf["train_s"] > 0


def test_growth_exponents_recover_known_slopes():
    rows = [
        {
            "index": "Flat",
            "dim": 384,
            "passages": n,
            "build_s": 1e-6 * n,
            "readd_s": 2e-6 * n,
            "index_mb": 1e-3 * n,
            "faiss_qps": 1e7 / n,
        }
        for n in (10_000, 100_000, 1_000_000)
    ]
    rows += [
        {
            "index": "IVF64,PQ8",
            "dim": 384,
            "passages": n,
            "build_s": 5.0 + 0 * n,
            "readd_s": 1e-4 * n**0.5,
            "index_mb": 1e-5 * n,
            "faiss_qps": 100.0,
        }
        for n in (10_000, 1_000_000)
    ]
    out = {(g["index"], g["dim"]): g for g in bench_scale.growth_exponents(rows)}
    flat = out[("Flat", 384)]
    assert flat["slope_build_s"] == pytest.approx(1.0)
    assert flat["slope_search_s_per_query"] == pytest.approx(1.0)
    ivf = out[("IVF-PQ", 384)]
    assert ivf["slope_build_s"] == pytest.approx(0.0, abs=1e-12) and ivf["slope_readd_s"] == pytest.approx(0.5)


def test_projection_memory_and_refresh_arithmetic():
    index_rows = [
        {
            "index": "Flat",
            "dim": 384,
            "passages": 1_000_000,
            "bytes_per_vector": 1536.0,
            "readd_s": 1.0,
            "faiss_qps": 10.0,
            "numpy_qps": 20.0,
        },
        {
            "index": "IVF1024,PQ32",
            "dim": 384,
            "passages": 1_000_000,
            "bytes_per_vector": 40.0,
            "readd_s": 50.0,
            "faiss_qps": 1000.0,
            "numpy_qps": 20.0,
            "nprobe": 16,
        },
    ]
    embed_rows = [
        {
            "model": "bert-base (Contriever arch., random init)",
            "device": "cpu (2 threads)",
            "passages_per_s": 2.0,
            "gflop_per_passage": 25.0,
            "mean_tokens": 140.0,
            "fraction_of_gemm": 0.5,
        }
    ]
    rows = {r["quantity"]: r for r in bench_scale.project(index_rows, embed_rows)}
    n = bench_scale.PAPER_PASSAGES
    assert rows["flat index, float32 (21M × 768)"]["value"] == pytest.approx(n * 768 * 4 / 2**30)
    assert rows["flat index, float32 (21M × 768)"]["value"] == pytest.approx(60.1, abs=0.1)
    ivf = rows["IVF65536,PQ64 index"]["value"]
    assert ivf == pytest.approx((n * 72 + 65536 * 768 * 4 + 768 * 256 * 4) / 2**30)
    assert rows["full re-embed of 21M passages, this CPU"]["value"] == pytest.approx(n / 2.0 / 3600)
    h100 = rows["full re-embed of 21M passages, one H100 SXM"]["value"]
    assert h100 == pytest.approx(n * 25e9 / (989e12 * bench_scale.ASSUMED_ENCODER_MFU) / 3600)
    # IVF-PQ re-add: 50 s per 1M at 384-d -> x21 passages, x2 dimension
    assert rows["IVF-PQ re-add of 21M vectors, this CPU"]["value"] == pytest.approx(50.0 / 1e6 * 2 * n / 60)
    assert all(r["basis"].startswith(("measured", "projected")) for r in rows.values())

    settings = {s["gpus"]: s for s in bench_scale.settings(embed_rows)}
    per_gpu = 989e12 * bench_scale.ASSUMED_ENCODER_MFU / 25e9
    assert settings[1]["refresh_min"] == pytest.approx(n / per_gpu / 60)
    assert settings[1]["allgather_s"] == 0.0
    assert settings[8]["refresh_min"] < settings[1]["refresh_min"] / 7.9
    assert settings[64]["interval_for_10pct"] == pytest.approx(
        settings[64]["refresh_min"] * 60 / (bench_scale.REFRESH_OVERHEAD_TARGET * bench_scale.ASSUMED_STEP_S)
    )


def test_run_isolated_reports_the_childs_peak_rss():
    out = run_isolated("bench.bench_scale:index_config", {"n": 2000, "d": 16, "kind": "Flat", "nq": 8, "repeats": 1})
    assert out["passages"] == 2000
    assert out["peak_rss_mb"] >= out["baseline_rss_mb"] > 0
    assert out["peak_rss_delta_mb"] == pytest.approx(out["peak_rss_mb"] - out["baseline_rss_mb"])


@pytest.mark.parametrize("name", ["gemm", "retrieval", "attention", "training", "scale", "ig"])
def test_each_benchmark_runs_as_a_script(name):
    """`python bench/bench_<name>.py --help` from anywhere: the scripts find the bench package themselves."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"bench_{name}.py"), "--help"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout and "--quick" in proc.stdout
