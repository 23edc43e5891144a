"""Attention-quality analysis: is a reader's attention a good teacher for the retriever?

Per instance (``quality``): normalised passage-token scores â, similarity of every passage token
to the answer's tokens and to the question's nouns, the 90th/95th-percentile selections, mean
attention, lift and Spearman. Across instances (``indicators``): mean ± std, counts, and the
verdict of Indicators 1 and 2 against a reference reader. ``report`` and ``figures`` write the
study's tables and histograms; ``run`` is the pipeline behind ``ragdistill analyze`` /
``ragdistill diagnose``; ``perplexity`` defines the per-token quantity of the perplexity signal;
``monitor.IndicatorMonitor`` checks the indicators during training.
"""

from ragdistill.analysis.indicators import VerdictOptions, advice, summarize, verdict
from ragdistill.analysis.monitor import IndicatorMonitor
from ragdistill.analysis.quality import (
    InstanceMeasures,
    max_cosine_similarity,
    measure_instance,
    normalized_passage_scores,
    percentile_selection,
    question_noun_ids,
    spearman_or_none,
)

__all__ = [
    "IndicatorMonitor",
    "InstanceMeasures",
    "VerdictOptions",
    "advice",
    "max_cosine_similarity",
    "measure_instance",
    "normalized_passage_scores",
    "percentile_selection",
    "question_noun_ids",
    "spearman_or_none",
    "summarize",
    "verdict",
]
