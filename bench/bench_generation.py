"""Evaluation with generation: the project's answer generation vs a plain batched ``model.generate``.

The powered study generates answers for hundreds of test questions in every setting, so this is the
evaluation's main cost. Both sides get the same prompts (the bundled reader's template over the same five
passages per question, demo world v2 test questions: the gold passage and four seeded others, in a seeded
order), the same batch size and the same budget of new tokens:

* ragdistill: ``DecoderReader.generate`` (what ``evaluate`` calls): prompts batched by length, each row
  stopped once its answer line is complete;
* plain: ``model.generate`` on the same prompt ids (built by the same template, timed on both sides) in the
  questions' order, in batches of the same size, greedy,
  KV cache, left padding, the reader's end-of-turn ids as EOS; the answers cut by the same ``clean``.

The two alternate round after round; questions/s is the median over rounds and the ratio is ragdistill /
plain (> 1: ragdistill faster). The answers of both sides are compared (they should be identical).

    python bench/bench_generation.py [--quick]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import device_label, md_table, script_main  # noqa: E402

K = 5


def _prompts(n: int, seed: int = 0):
    """(questions, passages) for the first `n` demo-world test questions: gold + 4 seeded others, shuffled."""
    from ragdistill.data.demo import generate_demo_world

    world = generate_demo_world(seed=0)
    by_id = world.passage_by_id()
    rng = random.Random(seed)
    questions, passages = [], []
    for q in world.questions["test"][:n]:
        gold = by_id[world.gold[q.id]]
        others = rng.sample([p for p in world.passages if p.id != gold.id], K - 1)
        ps = [gold, *others]
        rng.shuffle(ps)
        questions.append(q.question)
        passages.append(ps)
    return questions, passages


def _plain(reader, questions: list[str], passages: list, max_new_tokens: int) -> list[str]:
    """Plain batched greedy `model.generate` in the given order (left padding, KV cache); the same prompt ids."""
    import torch

    prompts = [reader._item(q, p, None).prompt_ids for q, p in zip(questions, passages)]
    answers = []
    model = reader.model
    model.eval()
    with torch.no_grad():
        for s in range(0, len(prompts), reader.batch_size):
            ids, mask = reader._pad(prompts[s : s + reader.batch_size], "left")
            mask = torch.ones_like(ids) if mask is None else mask
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                num_beams=1,
                pad_token_id=reader.pad_token_id,
                eos_token_id=reader.stop_token_ids or None,
            )
            answers.extend(reader.clean(row) for row in out[:, ids.shape[1] :].tolist())
    return answers


def run(quick: bool = False, device: str = "cpu") -> dict[str, Any]:
    import torch

    from ragdistill.readers import get_reader

    n, rounds = (16, 2) if quick else (96, 3)
    batch, max_new, budget = 8, 8, 256  # the demo configs' evaluation settings
    reader = get_reader(
        "smollm2-135m",
        kind="decoder",
        device=device,
        max_prompt_tokens=budget,
        max_new_tokens=max_new,
        batch_size=batch,
    )
    questions, passages = _prompts(n)
    prompts = [reader._item(q, p, None).prompt_ids for q, p in zip(questions, passages)]
    lengths = [len(p) for p in prompts]
    reader.generate(questions[:batch], passages[:batch])  # warm-up
    _plain(reader, questions[:batch], passages[:batch], max_new)
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    answers: dict[str, list[str]] = {}
    for r in range(rounds):
        for side in ("ours", "plain") if r % 2 == 0 else ("plain", "ours"):
            t0 = time.perf_counter()
            if side == "ours":
                answers[side] = reader.generate(questions, passages)
            else:
                answers[side] = _plain(reader, questions, passages, max_new)
            times[side].append(time.perf_counter() - t0)
    ours_qps = n / statistics.median(times["ours"])
    plain_qps = n / statistics.median(times["plain"])
    same = sum(a == b for a, b in zip(answers["ours"], answers["plain"])) / n
    rows = [
        {
            "side": "plain model.generate (questions' order)",
            "device": device_label(device),
            "questions": n,
            "batch": batch,
            "new tokens": max_new,
            "median s": statistics.median(times["plain"]),
            "questions/s": plain_qps,
        },
        {
            "side": "ragdistill DecoderReader.generate",
            "device": device_label(device),
            "questions": n,
            "batch": batch,
            "new tokens": max_new,
            "median s": statistics.median(times["ours"]),
            "questions/s": ours_qps,
            "vs plain": ours_qps / plain_qps,
        },
    ]
    return {
        "title": "Evaluation with generation: ragdistill vs a plain batched model.generate",
        "rows": rows,
        "answers_identical": same,
        "ratios": {
            f"generation questions/s vs plain model.generate ({device})": ours_qps / plain_qps,
            f"identical answers, share ({device})": same,
        },
        "notes": [
            f"reader smollm2-135m, fp32, torch threads {torch.get_num_threads()}; {n} demo-world v2 test questions, "
            f"{K} passages each (gold + 4 seeded others), prompt budget {budget} tokens (prompt lengths "
            f"{min(lengths)}-{max(lengths)}, median {statistics.median(lengths):.0f}), batch {batch}, at most "
            f"{max_new} new tokens, greedy; {rounds} rounds after a warm-up, the two sides alternating; "
            "questions/s = questions / median seconds.",
            "ragdistill batches the prompts by length and stops a row once its first answer line is complete; "
            f"the answers of the two sides were identical for {same:.1%} of the questions.",
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    cols = [
        ("side", "generation"),
        ("device", "device"),
        ("questions", "questions"),
        ("batch", "batch"),
        ("new tokens", "max new tokens"),
        ("median s", "median s"),
        ("questions/s", "questions/s"),
        ("vs plain", "ragdistill / plain"),
    ]
    return "\n".join([md_table(result["rows"], cols), "", *[f"- {n}" for n in result.get("notes", [])]])


if __name__ == "__main__":
    sys.exit(script_main(run, __doc__, "16 questions, 2 rounds (a smoke run)"))
