"""Retrieval: the bi-encoder retriever, the FAISS passage index with refresh, and HR@k.

from ragdistill.retrieval import BiEncoderRetriever, PassageIndex
r = BiEncoderRetriever.from_pretrained("minilm-l6")
index = PassageIndex.build(passages, r, "runs/index")
hits = index.retrieve(r, ["who wrote hamlet?"], k=5)
"""

from ragdistill.retrieval.evaluate import evaluate_retrieval, sample_questions
from ragdistill.retrieval.index import PassageIndex, Retrieved, make_faiss_index, shard_bounds
from ragdistill.retrieval.metrics import has_answer, hit_flags, hits_at_k, hits_from_flags
from ragdistill.retrieval.refresh import RefreshSchedule
from ragdistill.retrieval.retriever import BiEncoderRetriever, check_compatible
from ragdistill.retrieval.store import PassageStore

__all__ = [
    "BiEncoderRetriever",
    "PassageIndex",
    "PassageStore",
    "RefreshSchedule",
    "Retrieved",
    "check_compatible",
    "evaluate_retrieval",
    "has_answer",
    "hit_flags",
    "hits_at_k",
    "hits_from_flags",
    "make_faiss_index",
    "sample_questions",
    "shard_bounds",
]
