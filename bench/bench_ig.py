"""Integrated gradients of the perplexity analysis: the K passages batched together vs one passage at a time.

The perplexity signal's token scores (analysis/perplexity.py) need a forward+backward per path point and
passage. Timed side by side in one run on the same instances, with the bundled readers (SmolLM2-135M and the
offline BERT-to-BERT FiD reader, fp32 as the analysis runs them) on demo-world questions, each with its gold
passage and four passages drawn at random (seeded):

- ``alone``: each passage's path points in their own forwards (at most PATH_BATCH rows), the whole input each
  time: the schedule before the passages were pooled;
- ``pooled``: the K passages' path points in shared right-padded batches (ROW_TOKENS tokens), and for the
  decoder-only reader the input before the passage (chat template, question) computed once an instance and
  logits only where an answer token is predicted.

Both give the same nodes and scores (tests/analysis/test_ig_completeness.py checks that); the table reports
seconds per instance and the ratio.

    python -m bench.bench_ig [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import md_table  # noqa: E402

K = 5


def _instances(n: int, seed: int = 0) -> list[tuple[str, list[Any], str]]:
    from ragdistill.data.demo import generate_demo_world

    world = generate_demo_world(seed=0)
    by_id = world.passage_by_id()
    rng = random.Random(seed)
    out = []
    for q in rng.sample(world.questions["test"], n):
        gold = by_id[world.gold[q.id]]
        others = rng.sample([p for p in world.passages if p.id != gold.id], K - 1)
        passages = others[:]
        passages.insert(rng.randrange(K), gold)
        out.append((q.question, passages, q.answers[0]))
    return out


def _time(reader: Any, instances: list[tuple[str, list[Any], str]], pooled: bool) -> tuple[float, list[int]]:
    from ragdistill.analysis import perplexity as ig

    saved = ig.POOL_PASSAGES, ig.PREFIX_CACHE, ig.ANSWER_LOGITS
    ig.POOL_PASSAGES = ig.PREFIX_CACHE = ig.ANSWER_LOGITS = pooled
    try:
        t0 = time.perf_counter()
        nodes = []
        for question, passages, answer in instances:
            _, diag = ig.perplexity_token_scores(reader, question, passages, answer)
            nodes.append(sum(diag.nodes))
        return (time.perf_counter() - t0) / len(instances), nodes
    finally:
        ig.POOL_PASSAGES, ig.PREFIX_CACHE, ig.ANSWER_LOGITS = saved


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from ragdistill.readers import get_reader

    torch.manual_seed(0)
    readers = {
        "decoder (smollm2-135m)": (lambda: get_reader("smollm2-135m", kind="decoder"), 1 if quick else 2),
        "fid (minilm-bert2bert)": (lambda: get_reader("minilm-bert2bert", kind="fid"), 3 if quick else 10),
    }
    rows = {}
    for label, (load, n) in readers.items():
        reader = load()
        instances = _instances(n)
        _time(reader, instances[:1], pooled=True)  # warm-up (lazy init, allocator)
        alone, nodes_a = _time(reader, instances, pooled=False)
        pooled, nodes_p = _time(reader, instances, pooled=True)
        rows[label] = {
            "instances": n,
            "alone_s": alone,
            "pooled_s": pooled,
            "speedup": alone / pooled,
            "nodes_per_instance": sum(nodes_p) / n,
            "same_nodes": nodes_a == nodes_p,
        }
        del reader
    ratios = {f"alone / pooled time, {label}": r["speedup"] for label, r in rows.items()}
    return {"k": K, "threads": torch.get_num_threads(), "readers": rows, "ratios": ratios}


def markdown(result: dict[str, Any]) -> str:
    rows = [
        {
            "reader": label,
            "instances": r["instances"],
            "path points / instance": round(r["nodes_per_instance"]),
            "alone s/inst.": round(r["alone_s"], 2),
            "pooled s/inst.": round(r["pooled_s"], 2),
            "speed-up": f"{r['speedup']:.2f}x",
            "same nodes": "yes" if r["same_nodes"] else "NO",
        }
        for label, r in result["readers"].items()
    ]
    return md_table(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer instances")
    args = ap.parse_args(argv)
    result = run(quick=args.quick)
    print(markdown(result))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
