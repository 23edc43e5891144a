"""The study's experimental settings (METHOD.md §4) as a table the reproduce runner walks.

Each row says what trains (regime), which reader family reads (decoder-only or FiD), which
signal teaches the retriever (and is analysed), which training config holds its
hyper-parameters (``configs/<scale>/<config>``), which settings it needs first, and whose
reader is its reference for the attention-quality indicators.

Two rows are not training runs: the off-the-shelf checkpoints (decoder-only and FiD) are
evaluated and analysed as they are; they are the reference rows of Table 1 and Table 2.
The decoder-only perplexity variant (``perplexity_distill_decoder``) is optional: it runs
when a decoder reader is named with ``--reader`` (METHOD.md §4 runs perplexity distillation
with the FiD reader).
"""

from __future__ import annotations

from dataclasses import dataclass

DECODER = "decoder"
FID = "fid"


@dataclass(frozen=True)
class Setting:
    """One row of the study: what it trains and where its hyper-parameters live."""

    name: str  # identifier (run directory name, --only value)
    number: str  # row label in the tables ("1", "2", ..., "6b")
    title: str  # human title
    regime: str  # none | joint | reader | retriever
    family: str  # decoder | fid: which reader, and whose reference applies
    signal: str  # attention | perplexity: the teacher signal (also the analysed one)
    config: str  # training config file under configs/<scale>/ (also data/models of reference rows)
    depends_on: tuple[str, ...] = ()  # settings whose outputs this one reads (step 2 reads step 1's reader)
    reference: str | None = None  # setting whose reader is the indicators' reference (None: is a reference)
    optional: bool = False  # run only when asked (see `enabled_by`)
    enabled_by: str = ""  # the flag that turns an optional row on
    reader_from: str | None = None  # the reader is another setting's trained reader (frozen here)
    overrides: tuple[str, ...] = ()  # --set overrides applied to the config for this row
    notes: str = ""

    @property
    def trains(self) -> bool:
        return self.regime != "none"

    @property
    def trains_retriever(self) -> bool:
        return self.regime in ("joint", "retriever")

    @property
    def trains_reader(self) -> bool:
        return self.regime in ("joint", "reader")

    @property
    def what_trains(self) -> str:
        return {
            "none": "nothing (reference row)",
            "joint": "reader and retriever, jointly",
            "reader": "reader only (retriever fixed)",
            "retriever": "retriever only (reader fixed)",
        }[self.regime]


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "offshelf_checkpoint",
        "1",
        "Off-the-shelf checkpoint",
        "none",
        DECODER,
        "attention",
        "offshelf_distill.yaml",
        notes="the initial decoder-only reader and retriever, evaluated and analysed as they are",
    ),
    Setting(
        "offshelf_checkpoint_fid",
        "1b",
        "Off-the-shelf checkpoint (FiD reader)",
        "none",
        FID,
        "attention",
        "encdec_distill.yaml",
        notes="the initial encoder-decoder reader: the reference of settings 5 and 6",
    ),
    Setting(
        "offshelf_distill",
        "2",
        "Off-the-shelf distillation",
        "joint",
        DECODER,
        "attention",
        "offshelf_distill.yaml",
        reference="offshelf_checkpoint",
    ),
    Setting(
        "finetuned_step1",
        "3",
        "Fine-tuned distillation, step 1",
        "reader",
        DECODER,
        "attention",
        "finetuned_step1.yaml",
        reference="offshelf_checkpoint",
        notes="the reader learns to answer from the retrieved passages; the retriever is fixed",
    ),
    Setting(
        "finetuned_step2",
        "4",
        "Fine-tuned distillation, step 2",
        "retriever",
        DECODER,
        "attention",
        "finetuned_step2.yaml",
        depends_on=("finetuned_step1",),
        reference="offshelf_checkpoint",
        reader_from="finetuned_step1",
        notes="the retriever learns from the step-1 reader (frozen); the index is refreshed periodically",
    ),
    Setting(
        "encdec_distill",
        "5",
        "Encoder-decoder distillation",
        "joint",
        FID,
        "attention",
        "encdec_distill.yaml",
        reference="offshelf_checkpoint_fid",
    ),
    Setting(
        "perplexity_distill",
        "6",
        "Perplexity distillation (FiD reader)",
        "joint",
        FID,
        "perplexity",
        "perplexity_distill.yaml",
        reference="offshelf_checkpoint_fid",
    ),
    Setting(
        "perplexity_distill_decoder",
        "6b",
        "Perplexity distillation (decoder-only reader)",
        "joint",
        DECODER,
        "perplexity",
        "perplexity_distill.yaml",
        reference="offshelf_checkpoint",
        optional=True,
        enabled_by="--reader NAME",
        notes="the perplexity signal with the decoder-only reader; reader options come from the "
        "off-the-shelf distillation config",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# A preparation item, not a setting of the study: the offline encoder-decoder `minilm-bert2bert` reads nothing
# until fitted, so (unless a real encoder-decoder is named with --encdec-reader) it is first fine-tuned as a
# reader on the training split, and settings 1b, 5 and 6 start from its reader/ — the stand-in for the study's
# pre-trained T5-large. Planned only where configs/<scale>/fid_reader_fit.yaml exists.
FID_READER_FIT = Setting(
    "fid_reader_fit",
    "0b",
    "FiD reader fit (stands in for a pre-trained T5)",
    "reader",
    FID,
    "attention",
    "fid_reader_fit.yaml",
    notes="minilm-bert2bert fine-tuned as a reader (retriever fixed) before settings 1b, 5 and 6",
)
FITTED_FROM_FID_READER_FIT = ("offshelf_checkpoint_fid", "encdec_distill", "perplexity_distill")
# Every name a plan item can carry (the study's settings and the preparation item): --only, SETTING:key=value
ITEMS_BY_NAME: dict[str, Setting] = {**BY_NAME, FID_READER_FIT.name: FID_READER_FIT}
# Settings whose retriever is the one the reader taught: the rows whose ΔHR@5 the indicators try to predict.
RETRIEVER_OUTCOME = {s.name for s in SETTINGS if s.trains_retriever}


def get_setting(name: str) -> Setting:
    from ragdistill.errors import ConfigError

    if name not in ITEMS_BY_NAME:
        raise ConfigError("only", f"unknown setting '{name}'; the settings are: {', '.join(ITEMS_BY_NAME)}")
    return ITEMS_BY_NAME[name]


def teacher_of(setting: Setting) -> str:
    """The setting whose reader taught this setting's retriever (step 2 learns from step 1's reader)."""
    return setting.reader_from or setting.name


def markdown_table() -> str:
    """The settings table, for --help texts and the report."""
    rows = ["| # | setting | reader | signal | what trains | config | needs |", "|---|---|---|---|---|---|---|"]
    for s in SETTINGS:
        reader = "decoder-only" if s.family == DECODER else "FiD (encoder-decoder)"
        rows.append(
            f"| {s.number} | {s.name} | {reader} | {s.signal} | {s.what_trains} | {s.config} | "
            f"{', '.join(s.depends_on) or '–'} |"
        )
    return "\n".join(rows)
