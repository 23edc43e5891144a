"""The bundled demo world: a small, seeded, fictional encyclopedia for running everything offline.

Why fictional: a reader cannot know the capital of an invented country, so it must
read the retrieved passage — which is what retrieval-augmented models and attention
distillation are about. Everything is generated from `random.Random(seed)` (no global
state), so the same seed gives byte-identical files.

What is in it:

* entities of five kinds (countries, people, companies, rivers, inventions) whose names
  are built from syllables, so they are not real words;
* one short *gold* passage per (entity, asked attribute) — capital, founder, founding
  year, length, inventor, ... — titled with the entity's name;
* *distractor* passages with the same title that state other attributes (a former
  capital, a second factory, an improved version by someone else), so the other
  passages about the same entity are hard negatives for the retriever;
* questions worded differently from the passages (several paraphrase templates per
  attribute) whose answer is a short span that appears, verbatim, in the gold passage
  and nowhere else in the corpus (checked when the world is built);
* train/dev/test splits by fact: one (entity, attribute) never appears in two splits.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ragdistill.data.types import Passage, Question
from ragdistill.errors import ConfigError

SPLITS = ("train", "dev", "test")

# --------------------------------------------------------------------------- templates
# {E}: the entity's name, {V}: the asked value. Distractor slots: {city} {person} {num}
# {word} {country} {company} (fresh values or other entities, never an answer).

ATTRIBUTES: dict[str, list[dict[str, Any]]] = {
    "country": [
        {
            "name": "capital",
            "value": "city",
            "passages": [
                "{E} is governed from the city of {V}, which lies on a wide eastern plain.",
                "The parliament of {E} meets in {V}, the largest city in the land.",
                "{V} has been the seat of government of {E} for as long as records exist.",
            ],
            "questions": [
                "What is the capital of {E}?",
                "Which city is the capital of {E}?",
                "Name the capital city of {E}.",
            ],
        },
        {
            "name": "currency",
            "value": "currency",
            "passages": [
                "Traders in {E} pay with the {V}, a coin first struck from silver.",
                "Prices in {E} are given in {V} coins, which are divided into a hundred smaller pieces.",
                "Shops across {E} accept only the {V} as payment.",
            ],
            "questions": [
                "What is the currency of {E}?",
                "Which currency is used in {E}?",
                "What money do people use in {E}?",
            ],
        },
        {
            "name": "independence",
            "value": "year",
            "passages": [
                "{E} became a sovereign state in {V} after a long dispute with its neighbours.",
                "The people of {E} won self-rule in {V} and have celebrated it every summer since.",
                "{E} broke away from the old empire in {V}.",
            ],
            "questions": [
                "When did {E} gain independence?",
                "In what year did {E} become independent?",
                "What year did {E} achieve independence?",
            ],
        },
        {
            "name": "language",
            "value": "language",
            "passages": [
                "Most families in {E} talk to one another in {V} at home.",
                "Schools in {E} teach children to read and write in {V}.",
                "The official tongue of {E} is {V}, written in its own script.",
            ],
            "questions": [
                "What language is spoken in {E}?",
                "Which language do people speak in {E}?",
                "What is the main language of {E}?",
            ],
        },
        {
            "name": "leader",
            "value": "person",
            "passages": [
                "{E} is led by President {V}, who was elected by a narrow margin.",
                "The head of state of {E}, {V}, lives in a modest house near the coast.",
                "{V} heads the government of {E} and chairs its council of ministers.",
            ],
            "questions": ["Who is the president of {E}?", "Who leads {E}?", "Who is the head of state of {E}?"],
        },
    ],
    "person": [
        {
            "name": "birthplace",
            "value": "city",
            "passages": [
                "{E} grew up in the town of {V}, on a farm close to the river.",
                "{V} is the home town of {E}, who was raised there by an aunt.",
                "{E} spent a quiet childhood in {V}, where the family kept bees.",
            ],
            "questions": ["Where was {E} born?", "What is the birthplace of {E}?", "In which town was {E} born?"],
        },
        {
            "name": "birth_year",
            "value": "year",
            "passages": [
                "{E} came into the world in {V}, the youngest of five children.",
                "Records of the parish show that {E} was baptised in {V}.",
                "{E}, whose life began in {V}, was a sickly but curious child.",
            ],
            "questions": ["In what year was {E} born?", "When was {E} born?", "What is the birth year of {E}?"],
        },
        {
            "name": "spouse",
            "value": "person",
            "passages": [
                "{E} wed {V} in a small ceremony by the lake.",
                "{E} shared a long and happy marriage with {V}.",
                "After years of letters, {E} and {V} became husband and wife.",
            ],
            "questions": ["Who was {E} married to?", "Who was the spouse of {E}?", "Whom did {E} marry?"],
        },
        {
            "name": "novel",
            "value": "book",
            "passages": [
                "{E} is remembered above all as the author of {V}.",
                "The most famous book by {E} is {V}, which is still read in schools.",
                "{E} spent nine years writing {V}.",
            ],
            "questions": [
                "What novel did {E} write?",
                "Which book is {E} best known for?",
                "What is the most famous work of {E}?",
            ],
        },
        {
            "name": "teacher",
            "value": "person",
            "passages": [
                "As a young apprentice, {E} learned the craft from {V}.",
                "{E} studied for six years under the painter {V}.",
                "{V} trained {E} and later called the pupil the finest of a generation.",
            ],
            "questions": ["Who taught {E}?", "Who was the mentor of {E}?", "Under whom did {E} study?"],
        },
    ],
    "company": [
        {
            "name": "founder",
            "value": "person",
            "passages": [
                "{E} was started by {V}, a former railway clerk.",
                "{V} set up {E} with money borrowed from a cousin.",
                "The firm {E} owes its existence to {V}, who opened it in a rented barn.",
            ],
            "questions": ["Who founded {E}?", "Who is the founder of {E}?", "Who established {E}?"],
        },
        {
            "name": "founded",
            "value": "year",
            "passages": [
                "{E} opened its first workshop in {V}.",
                "{E} has been in business since {V}.",
                "The story of {E} begins in {V}, when its first shop opened its doors.",
            ],
            "questions": ["When was {E} founded?", "In which year was {E} established?", "What year was {E} created?"],
        },
        {
            "name": "headquarters",
            "value": "city",
            "passages": [
                "The head office of {E} stands in {V}, near the old harbour.",
                "{E} runs its business from offices in {V}.",
                "Managers of {E} work in a tall building in the centre of {V}.",
            ],
            "questions": [
                "Where is {E} headquartered?",
                "In which city are the headquarters of {E}?",
                "Where does {E} have its head office?",
            ],
        },
        {
            "name": "product",
            "value": "product",
            "passages": [
                "{E} makes the {V}, a small machine sold across the region.",
                "Most of the income of {E} comes from selling the {V}.",
                "The {V} is made by {E} in large numbers every year.",
            ],
            "questions": [
                "What is the best-known product of {E}?",
                "What does {E} manufacture?",
                "Which product is {E} famous for?",
            ],
        },
        {
            "name": "ceo",
            "value": "person",
            "passages": [
                "Since the last reorganisation, {E} has been run by chief executive {V}.",
                "{V} took charge of {E} as its chief executive after a boardroom fight.",
                "Day-to-day decisions at {E} are taken by its chief executive, {V}.",
            ],
            "questions": ["Who is the CEO of {E}?", "Who runs {E}?", "Who is in charge of {E}?"],
        },
    ],
    "river": [
        {
            "name": "length",
            "value": "number",
            "passages": [
                "{E} runs for {V} kilometres before it reaches the sea.",
                "From its spring to its end, {E} covers a distance of {V} kilometres.",
                "{E} measures {V} kilometres from end to end.",
            ],
            "questions": [
                "How long is {E} in kilometres?",
                "What is the length of {E} in km?",
                "How many kilometres long is {E}?",
            ],
        },
        {
            "name": "source",
            "value": "mountain",
            "passages": [
                "{E} springs from the slopes of {V} in the high country.",
                "The waters of {E} first appear as melting snow on {V}.",
                "{E} begins as a thin stream high up on {V}.",
            ],
            "questions": ["Where does {E} rise?", "What is the source of {E}?", "On which mountain does {E} begin?"],
        },
        {
            "name": "mouth",
            "value": "lake",
            "passages": [
                "{E} ends in {V}, where it forms a wide marshy delta.",
                "After its long journey, {E} pours into {V}.",
                "{E} finally drains into {V} through several channels.",
            ],
            "questions": ["Into which lake does {E} flow?", "Where does {E} end?", "What is the mouth of {E}?"],
        },
        {
            "name": "tributary",
            "value": "stream",
            "passages": [
                "The largest stream that joins {E} is the {V}.",
                "{E} is fed mainly by the {V}, which meets it at a rocky gorge.",
                "The {V} brings most of the water that {E} carries.",
            ],
            "questions": [
                "What is the main tributary of {E}?",
                "Which river is the largest tributary of {E}?",
                "What is the biggest tributary of {E}?",
            ],
        },
    ],
    "invention": [
        {
            "name": "inventor",
            "value": "person",
            "passages": [
                "The {E} was devised by the engineer {V} while working in a mill.",
                "{V} came up with the {E} after watching water wheels turn.",
                "It was {V} who first built the {E}, using parts from an old clock.",
            ],
            "questions": ["Who invented the {E}?", "Who is the inventor of the {E}?", "Who created the {E}?"],
        },
        {
            "name": "year",
            "value": "year",
            "passages": [
                "The first working {E} was shown to the public in {V}.",
                "Crowds saw the {E} in action for the first time in {V}.",
                "The {E} appeared in {V} and spread quickly.",
            ],
            "questions": [
                "When was the {E} invented?",
                "In which year was the {E} first demonstrated?",
                "What year was the {E} invented?",
            ],
        },
        {
            "name": "place",
            "value": "city",
            "passages": [
                "The {E} was first assembled in a workshop in {V}.",
                "Craftsmen in {V} put together the earliest {E}.",
                "The earliest {E} took shape in a cellar in {V}.",
            ],
            "questions": [
                "Where was the {E} invented?",
                "In which city was the {E} first made?",
                "Where was the first {E} built?",
            ],
        },
        {
            "name": "material",
            "value": "material",
            "passages": [
                "The frame of the {E} is cast from {V}, a light grey metal.",
                "Builders of the {E} prefer {V} because it does not rust.",
                "Every {E} contains a core of {V}.",
            ],
            "questions": [
                "What material is the {E} made from?",
                "What is the {E} made of?",
                "Which metal is used to build the {E}?",
            ],
        },
    ],
}

DISTRACTORS: dict[str, list[str]] = {
    "country": [
        "The former capital of {E} was {city}, abandoned after a great flood.",
        "{city} is the second city of {E} and its busiest port.",
        "{E} shares a long border with {country}, and the two often quarrel over fishing rights.",
        "In the old days {E} minted a coin called the {word}, which is now only seen in museums.",
        "The national poet of {E}, {person}, wrote about its cold valleys.",
    ],
    "person": [
        "{E} moved to {city} late in life and opened a small school there.",
        "The younger sister of {E}, {person}, was a well-known singer.",
        "{E} once visited {country} and wrote warmly about its people.",
        "A portrait of {E} hangs in the town hall of {city}.",
        "{E} later wrote a short play called {book}, which few people saw.",
    ],
    "company": [
        "{E} once tried to buy its rival {company}, but the deal failed.",
        "A second factory of {E} was built in {city} but closed soon after.",
        "{E} employs about {num} people in several towns.",
        "The first chairman of {E} was {person}, a cautious banker.",
        "{E} also sells the {product}, though it has never been popular.",
    ],
    "river": [
        "{E} flows through {country} and is crossed by many old bridges.",
        "A dam on {E} near {city} was finished after years of work.",
        "Fishermen on {E} catch eels and trout in the spring.",
        "A small stream called the {stream} joins {E} only in wet years.",
        "The painter {person} lived for many years on the banks of {E}.",
    ],
    "invention": [
        "An improved {E} was patented by {person} many years later.",
        "The {E} was widely used in {country} until cheaper machines replaced it.",
        "A museum in {city} keeps a rare early {E} behind glass.",
        "Some cheap copies of the {E} were made of {material}, and they broke easily.",
        "The {E} was sold by {company} for a short time.",
    ],
}

FILLERS: dict[str, list[str]] = {
    "country": [
        "{E} is a small country with cold winters and short summers.",
        "Much of {E} is covered by forests and hills.",
    ],
    "person": ["{E} kept a detailed diary for most of their life.", "Friends described {E} as patient and stubborn."],
    "company": ["{E} is known for careful workmanship.", "{E} has a loyal group of customers."],
    "river": ["{E} is popular with boaters in the warm months.", "The valley of {E} is green and fertile."],
    "invention": ["The {E} changed how many small workshops operated.", "Many households came to rely on the {E}."],
}

KINDS = ("country", "person", "company", "river", "invention")

# --------------------------------------------------------------------------- names

_ONSETS = [
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "sk",
    "st",
    "t",
    "th",
    "tr",
    "v",
    "z",
]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ae", "ei", "ou", "y"]
_CODAS = ["", "", "", "", "n", "r", "l", "s", "th", "k", "m", "nd", "rn"]
_SUFFIXES = {
    "country": ["ia", "oria", "and", "esh", "ara", "enne", "ovar"],
    "city": ["hal", "mark", "vik", "holm", "ford", "grad", "wick", "", ""],
    "company": [" Works", " Industries", " Trading Company", " Mills", " Foundry", " Brothers"],
    "invention": ["loom", "lamp", "engine", "pump", "clock", "compass", "kiln", "press", "winch"],
    "product": ["cutter", "lantern", "heater", "grinder", "scale", "stove"],
    "language": ["ish", "ic", "i", "ese"],
    "material": ["ite", "ium", "ine"],
    "book": ["Winter", "Road", "Garden", "Letters", "Harvest", "Tide", "Orchard"],
}


# Invented words must look foreign: a k, z or v, and a cluster English rarely has. Checked
# against BERT's 30k-word vocabulary, only the words below pass both rules; they are refused.
_HARD_LETTER = re.compile(r"k[aeiouy]|[aeiouy]k|z|v[aeiouy]")
_EXOTIC = re.compile(r"ae|[^aeiou]y[^aeiou]|kr|^sk|th[^e]|zr|ei[kz]|ou[kz]|yk")
_REAL_WORDS = frozenset(
    "skin kyle nebraska vinyl larvae rafael gaelic daemon skeleton kathy seize skinny skate skinner seizure husky "
    "skater risky sylvester skeletal kathryn transylvania skyline skyla graeme dyke saetan sykes balthazar maestro "
    "vertebrae katharine seizures souza skylar kathmandu gael vikram".split()
)


def _template_vocab() -> set[str]:
    words: set[str] = set()
    texts: list[str] = []
    for attrs in ATTRIBUTES.values():
        for a in attrs:
            texts += a["passages"] + a["questions"]
    for lst in (*DISTRACTORS.values(), *FILLERS.values()):
        texts += lst
    for lst in _SUFFIXES.values():
        texts += lst
    for t in texts:
        words.update(w for w in re.findall(r"[a-z]+", t.lower()) if w not in {"e", "v"})
    return words


class _Names:
    """Fresh invented names whose invented words are unique, at least 4 letters long, and never
    a substring of one another or of a template word.

    The substring rule (checked on whole words, suffixes included: "Grylkri"+"mark" contains
    "krim") is what lets every answer occur in exactly one passage even under the loosest
    (normalised substring) answer matching.
    """

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: list[str] = []
        self.vocab = _template_vocab() | {"mount", "lake", "river", "the", "president"}

    def _ok(self, low: str) -> bool:
        if len(low) < 4 or low in _REAL_WORDS or not (_HARD_LETTER.search(low) and _EXOTIC.search(low)):
            return False
        if any(low in w for w in self.vocab):
            return False
        return not any(low in u or u in low for u in self.used)

    def _root(self, syllables: tuple[int, int] = (2, 3)) -> str:
        n = self.rng.randint(*syllables)
        return "".join(
            self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS) for _ in range(n)
        ).capitalize()

    def make(self, kind: str) -> str:
        for _ in range(10_000):
            value, invented = self._compose(kind)
            words = [w.lower() for w in invented]
            if len(set(words)) == len(words) and all(self._ok(w) for w in words):
                self.used.extend(words)
                return value
        raise RuntimeError("demo world: ran out of invented names; lower the sizes")  # pragma: no cover

    def _compose(self, kind: str) -> tuple[str, list[str]]:
        """A name and its invented words (root plus any attached suffix); the rest are fixed English words."""
        r, w = self.rng, self._root
        attached = {
            "country": (1, 2),
            "city": (1, 2),
            "language": (1, 2),
            "material": (1, 2),
            "currency": (1, 2),
            "stream": (1, 2),
            "word": (1, 2),
        }
        if kind in attached:
            word = w(attached[kind]) + (r.choice(_SUFFIXES[kind]) if kind in _SUFFIXES else "")
            if kind in ("currency", "material", "word"):
                word = word.lower()
            return word, [word]
        if kind == "person":
            first, last = w((1, 2)), w((1, 2))
            return f"{first} {last}", [first, last]
        root = w((1, 2)) if kind in ("river",) else w()
        if kind == "company":
            return root + r.choice(_SUFFIXES["company"]), [root]
        if kind == "river":
            return f"{root} River", [root]
        if kind in ("invention", "product"):
            return f"{root} {r.choice(_SUFFIXES[kind])}", [root]
        if kind == "book":
            return f"The {root} {r.choice(_SUFFIXES['book'])}", [root]
        if kind == "mountain":
            return f"Mount {root}", [root]
        if kind == "lake":
            return f"Lake {root}", [root]
        raise ValueError(kind)


class _Numbers:
    """Unique four-digit numbers: equal length, so none is a substring of another."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[int] = set()

    def draw(self, lo: int, hi: int) -> str:
        for _ in range(100_000):
            n = self.rng.randint(lo, hi)
            if n not in self.used:
                self.used.add(n)
                return str(n)
        raise RuntimeError("demo world: ran out of distinct numbers; lower the sizes")  # pragma: no cover


# --------------------------------------------------------------------------- the world


VERSIONS = (1, 2)
LATEST_VERSION = 2

# Per version, the value a size left at None takes. Version 1 is kept byte for byte.
_DEFAULTS: dict[int, dict[str, Any]] = {
    1: dict(
        countries=40,
        people=60,
        companies=40,
        rivers=30,
        inventions=30,
        max_distractors=3,
        filler_prob=0.4,
        near_duplicate_prob=0.0,
        mention_prob=0.0,
        questions_per_fact=1,
        train_fraction=0.6,
        dev_fraction=0.2,
    ),
    2: dict(
        countries=49,
        people=68,
        companies=68,
        rivers=49,
        inventions=48,
        max_distractors=2,
        filler_prob=0.15,
        near_duplicate_prob=1.0,
        mention_prob=0.2,
        questions_per_fact=2,
        train_fraction=0.67,
        dev_fraction=0.1,
    ),
}


@dataclass(frozen=True)
class DemoConfig:
    """Version and sizes of the demo world; a size left at None takes the version's default.

    Version 2 (the default): 282 entities with one-token names, 1,128 facts, two questions per fact
    (2,256), ~2,900 passages.
    Version 1: ~1,300 passages and 940 questions with invented syllable names (kept byte for byte).
    `max_distractors` bounds the near-duplicate passages per fact in version 2 (the distractors per
    entity in version 1); `near_duplicate_prob` and `mention_prob` are version 2 only.
    """

    countries: int | None = None
    people: int | None = None
    companies: int | None = None
    rivers: int | None = None
    inventions: int | None = None
    max_distractors: int | None = None
    filler_prob: float | None = None
    questions_per_fact: int | None = None
    train_fraction: float | None = None
    dev_fraction: float | None = None
    version: int = LATEST_VERSION
    near_duplicate_prob: float | None = None
    mention_prob: float | None = None

    def resolved(self) -> DemoConfig:
        """This config with every None replaced by its version's default."""
        if self.version not in VERSIONS:
            raise ConfigError("version", f"must be one of {', '.join(map(str, VERSIONS))}, got {self.version!r}")
        d = _DEFAULTS[self.version]
        return DemoConfig(
            **{f.name: (d[f.name] if getattr(self, f.name) is None else getattr(self, f.name)) for f in fields(self)}
        )

    def validate(self) -> None:
        c = self.resolved()
        for f in ("countries", "people", "companies", "rivers", "inventions"):
            v = getattr(c, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 2000:
                raise ConfigError(f, f"must be an integer between 0 and 2000, got {v!r}")
        if sum(c.counts().values()) == 0:
            raise ConfigError("countries", "the demo world needs at least one entity")
        if c.version == 2:
            cap = entity_capacity_v2()
            for pool in cap:
                kinds = [k for k in KINDS if _ENTITY_POOL[k] == pool]
                n = sum(c.counts()[k] for k in kinds)
                if n > cap[pool]:
                    key = {
                        "country": "countries",
                        "person": "people",
                        "company": "companies",
                        "river": "rivers",
                        "invention": "inventions",
                    }[kinds[0]]
                    raise ConfigError(
                        key, f"version 2 has {cap[pool]} one-token names for {' + '.join(kinds)}; asked for {n}"
                    )
        if not isinstance(c.max_distractors, int) or not 0 <= c.max_distractors <= 5:
            raise ConfigError("max_distractors", f"must be an integer between 0 and 5, got {c.max_distractors!r}")
        for f in ("filler_prob", "near_duplicate_prob", "mention_prob"):
            v = getattr(c, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f, f"must be between 0 and 1, got {v!r}")
        if not isinstance(c.questions_per_fact, int) or not 1 <= c.questions_per_fact <= 3:
            raise ConfigError(
                "questions_per_fact",
                f"must be 1, 2 or 3 (the paraphrase templates per attribute), got {c.questions_per_fact!r}",
            )
        tr, dv = c.train_fraction, c.dev_fraction
        if not (0 < tr < 1 and 0 < dv < 1 and tr + dv < 1):
            raise ConfigError(
                "train_fraction",
                f"train_fraction ({tr}) and dev_fraction ({dv}) must be in (0, 1) with a sum below 1 (the rest is test)",
            )

    def counts(self) -> dict[str, int]:
        return dict(zip(KINDS, (self.countries, self.people, self.companies, self.rivers, self.inventions)))


@dataclass
class DemoFact:
    """One (entity, attribute, value) stated by exactly one gold passage."""

    entity: str
    kind: str
    attribute: str
    answers: list[str]
    passage_id: str
    split: str = ""


@dataclass
class DemoWorld:
    """The generated world in memory: passages, questions per split, and their gold passages."""

    seed: int
    config: DemoConfig
    passages: list[Passage]
    questions: dict[str, list[Question]]
    gold: dict[str, str]  # question id -> gold passage id
    facts: list[DemoFact] = field(default_factory=list)
    question_meta: dict[str, dict[str, str]] = field(default_factory=dict)  # question id -> entity, kind, attribute

    def passage_by_id(self) -> dict[str, Passage]:
        return {p.id: p for p in self.passages}


def _fill(template: str, values: dict[str, str]) -> str:
    text = template.format(**values)
    return text[0].upper() + text[1:]


def _in_text(kind: str, name: str) -> str:
    """How an entity is named inside a sentence ("the Styba River"); titles keep the bare name."""
    return f"the {name}" if kind == "river" else name


def _slots(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def _value(kind: str, names: _Names, numbers: _Numbers) -> tuple[str, list[str]]:
    """A fresh answer value and its answer list (the first is the training target)."""
    if kind == "year":
        v = numbers.draw(1000, 1999)
        return v, [v]
    if kind == "number":
        v = numbers.draw(2000, 9999)
        return v, [v]
    v = names.make(kind)
    if kind in ("mountain", "lake"):
        return v, [v, v.split(" ", 1)[1]]
    if kind == "book":
        return v, [v, v[4:]]
    return v, [v]


def normalize(text: str) -> str:
    """Lower case, punctuation and articles dropped, spaces folded (SQuAD's normalisation)."""
    text = "".join(ch if ch not in string.punctuation else " " for ch in text.lower())
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def generate_demo_world(seed: int = 0, config: DemoConfig | None = None, **sizes: Any) -> DemoWorld:
    """Build the demo world in memory (see the module docstring); same seed, same world."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed", f"must be an integer, got {seed!r}")
    config = config or DemoConfig()
    if sizes:
        unknown = set(sizes) - {f.name for f in fields(DemoConfig)}
        if unknown:
            raise ConfigError(
                sorted(unknown)[0], f"unknown demo-world size; known: {', '.join(f.name for f in fields(DemoConfig))}"
            )
        config = DemoConfig(**{**asdict(config), **sizes})
    config.validate()
    config = config.resolved()
    if config.version == 2:
        return _generate_v2(seed, config)
    rng = random.Random(seed)
    names, numbers = _Names(rng), _Numbers(rng)

    entities: dict[str, list[str]] = {kind: [names.make(kind) for _ in range(n)] for kind, n in config.counts().items()}

    raw: list[tuple[str, str, int | None]] = []  # (title, text, index of the fact it states, if any)
    facts: list[DemoFact] = []
    for kind in KINDS:
        for ent in entities[kind]:
            said = _in_text(kind, ent)
            for attr in ATTRIBUTES[kind]:
                value, answers = _value(attr["value"], names, numbers)
                text = _fill(rng.choice(attr["passages"]), {"E": said, "V": value})
                if rng.random() < config.filler_prob:
                    text += " " + _fill(rng.choice(FILLERS[kind]), {"E": said})
                facts.append(DemoFact(ent, kind, attr["name"], answers, passage_id=""))
                raw.append((ent, text, len(facts) - 1))
            n_distract = rng.randint(min(1, config.max_distractors), config.max_distractors)
            for template in rng.sample(DISTRACTORS[kind], n_distract):
                values = {"E": said}
                for slot in sorted(_slots(template) - {"E"}):
                    if slot in ("country", "company") and len(entities[slot]) > (1 if slot == kind else 0):
                        values[slot] = _in_text(slot, rng.choice([e for e in entities[slot] if e != ent]))
                    elif slot == "num":
                        values[slot] = numbers.draw(2000, 9999)
                    else:
                        values[slot] = names.make("city" if slot in ("country", "company") else slot)
                text = _fill(template, values)
                if rng.random() < config.filler_prob:
                    text += " " + _fill(rng.choice(FILLERS[kind]), {"E": said})
                raw.append((ent, text, None))

    templates = {(kind, a["name"]): a["questions"] for kind in KINDS for a in ATTRIBUTES[kind]}
    world = _assemble(rng, seed, config, raw, facts, templates, _in_text)
    _check_answers_unique(world)
    return world


def _assemble(
    rng: random.Random,
    seed: int,
    config: DemoConfig,
    raw: list[tuple[str, str, int | None]],
    facts: list[DemoFact],
    templates: dict[tuple[str, str], list[str]],
    named: Callable[[str, str], str],
) -> DemoWorld:
    """Shuffle the passages into a corpus, split by fact and word the questions (both versions).

    `raw` holds (title, text, index of the fact it states or None); `named(kind, entity)` is how a
    question names its entity. The order of the `rng` calls is part of the world: keep it.
    """
    order = list(range(len(raw)))
    rng.shuffle(order)  # an entity's passages are not neighbours in the corpus
    passages: list[Passage] = []
    for new_id, i in enumerate(order, 1):
        title, text, fact = raw[i]
        passages.append(Passage(str(new_id), title, text))
        if fact is not None:
            facts[fact].passage_id = str(new_id)

    # Splits by fact: shuffle the facts, cut by the fractions.
    fact_order = list(range(len(facts)))
    rng.shuffle(fact_order)
    n_train = round(len(facts) * config.train_fraction)
    n_dev = round(len(facts) * config.dev_fraction)
    for rank, i in enumerate(fact_order):
        facts[i].split = "train" if rank < n_train else "dev" if rank < n_train + n_dev else "test"

    questions: dict[str, list[Question]] = {s: [] for s in SPLITS}
    gold: dict[str, str] = {}
    meta: dict[str, dict[str, str]] = {}
    for i in fact_order:
        fact = facts[i]
        for wording in rng.sample(templates[(fact.kind, fact.attribute)], config.questions_per_fact):
            qid = f"demo-{fact.split}-{len(questions[fact.split]) + 1:04d}"
            questions[fact.split].append(
                Question(qid, _fill(wording, {"E": named(fact.kind, fact.entity)}), list(fact.answers))
            )
            gold[qid] = fact.passage_id
            meta[qid] = {"entity": fact.entity, "kind": fact.kind, "attribute": fact.attribute}
    return DemoWorld(seed, config, passages, questions, gold, facts, meta)


def _check_answers_unique(world: DemoWorld) -> None:
    """Every answer must occur (normalised substring) in its gold passage and in no other one."""
    norm = {p.id: normalize(p.as_text()) for p in world.passages}
    joined = "\x00".join(norm.values())  # one count over the corpus instead of a loop per passage
    texts = world.passage_by_id()
    for fact in world.facts:
        for answer in fact.answers:
            a = normalize(answer)
            if a not in norm[fact.passage_id] or joined.count(a) != 1:  # pragma: no cover - a generator bug
                where = [pid for pid, t in norm.items() if a in t]
                raise RuntimeError(
                    f"demo world: answer {answer!r} of {fact.entity}/{fact.attribute} found in passages {where}, expected only {fact.passage_id}"
                )
        if fact.answers[0] not in texts[fact.passage_id].text:
            raise RuntimeError(
                f"demo world: answer {fact.answers[0]!r} not verbatim in its gold passage"
            )  # pragma: no cover


# --------------------------------------------------------------------------- files


def _tsv_field(text: str) -> str:
    """Quote a TSV field as csv (and DPR's psgs_w100.tsv) do, only when it needs it."""
    if any(c in text for c in '"\t\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def demo_files(world: DemoWorld) -> dict[str, str]:
    """The demo world as file contents: {file name: text}, deterministic."""
    out: dict[str, str] = {}
    out["corpus.jsonl"] = "".join(
        json.dumps({"id": p.id, "title": p.title, "text": p.text}, ensure_ascii=False) + "\n" for p in world.passages
    )
    out["corpus.tsv"] = "id\ttext\ttitle\n" + "".join(
        f"{_tsv_field(p.id)}\t{_tsv_field(p.text)}\t{_tsv_field(p.title)}\n" for p in world.passages
    )
    for split in SPLITS:
        out[f"{split}.jsonl"] = "".join(
            json.dumps(
                {
                    "id": q.id,
                    "question": q.question,
                    "answers": q.answers,
                    "gold_passage_id": world.gold[q.id],
                    **world.question_meta[q.id],
                },
                ensure_ascii=False,
            )
            + "\n"
            for q in world.questions[split]
        )
    out["README.md"] = _readme(world) if world.config.version == 1 else _readme_v2(world)
    out["manifest.json"] = _manifest(world, out)
    return out


def _manifest(world: DemoWorld, files: dict[str, str]) -> str:
    """manifest.json: version, seed, sizes, record counts and the sha256 of every other file."""
    import hashlib

    manifest = {
        "name": "ragdistill demo world",
        "version": world.config.version,
        "seed": world.seed,
        "config": asdict(world.config),
        "counts": {
            "passages": len(world.passages),
            "facts": len(world.facts),
            **{s: len(world.questions[s]) for s in SPLITS},
        },
        "files": {
            name: {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "bytes": len(text.encode("utf-8"))}
            for name, text in sorted(files.items())
        },
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _readme(world: DemoWorld) -> str:
    c = world.config
    n_q = {s: len(world.questions[s]) for s in SPLITS}
    n_gold = len(world.facts)
    example = (
        world.questions["dev"][0] if world.questions["dev"] else next(q for s in SPLITS for q in world.questions[s])
    )
    gold = world.passage_by_id()[world.gold[example.id]]
    same_title = [p for p in world.passages if p.title == gold.title and p.id != gold.id][:2]
    lines = [
        "# ragdistill demo world",
        "",
        f"A fictional encyclopedia generated by `ragdistill data demo --seed {world.seed}` "
        "(module `ragdistill.data.demo`). Every name is invented from syllables, so a reader "
        "cannot answer without retrieving the right passage. The same seed gives byte-identical files.",
        "",
        "| file | format | records |",
        "|---|---|---|",
        f"| `corpus.jsonl` | passages JSONL `{{id, title, text}}` | {len(world.passages)} passages |",
        f"| `corpus.tsv` | DPR `psgs_w100.tsv` layout: `id<TAB>text<TAB>title` with a header | {len(world.passages)} passages |",
        *(
            f"| `{s}.jsonl` | questions JSONL `{{id, question, answers, gold_passage_id, entity, kind, attribute}}` | {n_q[s]} questions |"
            for s in SPLITS
        ),
        "",
        f"Entities: {c.countries} countries, {c.people} people, {c.companies} companies, {c.rivers} rivers, "
        f"{c.inventions} inventions. {n_gold} passages each state one fact (the gold passage of its questions); "
        f"the other {len(world.passages) - n_gold} are distractors titled with the same entity name that state "
        "other attributes (a former capital, a second factory, an improved version by someone else), so they are "
        "hard negatives for the retriever.",
        "",
        "Properties (checked when the world is built):",
        "- each answer occurs (normalised, even as a substring) in its gold passage and in no other passage;",
        "- questions are worded differently from passages (several paraphrase templates per attribute);",
        f"- train/dev/test are split by fact (entity, attribute): no fact is asked in two splits "
        f"({c.train_fraction:.0%}/{c.dev_fraction:.0%}/{1 - c.train_fraction - c.dev_fraction:.0%}).",
        "",
        "Example (dev):",
        "",
        f"- question: {example.question}  answers: {example.answers}",
        f"- gold passage {gold.id}: {gold.title}. {gold.text}",
        *(f"- hard negative {p.id}: {p.title}. {p.text}" for p in same_title),
        "",
        "Use it like any corpus: `ragdistill data inspect corpus.jsonl`, "
        "`ragdistill index --corpus corpus.jsonl ...`, `--questions dev.jsonl`.",
        "",
    ]
    return "\n".join(lines)


def write_demo_world(
    out_dir: str | Path, seed: int = 0, config: DemoConfig | None = None, **sizes: Any
) -> dict[str, Path]:
    """Generate the demo world and write it under `out_dir`; returns its paths.

    Keys: "corpus" (corpus.jsonl), "corpus_tsv" (corpus.tsv), "train", "dev", "test"
    (question JSONL files), "readme" (README.md) and "manifest" (manifest.json: version, seed,
    counts, sha256 of each file). The world is built and checked in
    memory first and each file is written atomically, so bad sizes write nothing.
    """
    from ragdistill.utils.io import atomic_write_text

    world = generate_demo_world(seed, config, **sizes)
    contents = demo_files(world)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("out", f"{out_dir} exists and is not a directory")
    keys = {
        "corpus.jsonl": "corpus",
        "corpus.tsv": "corpus_tsv",
        "train.jsonl": "train",
        "dev.jsonl": "dev",
        "test.jsonl": "test",
        "README.md": "readme",
        "manifest.json": "manifest",
    }
    paths: dict[str, Path] = {}
    for name, text in contents.items():
        atomic_write_text(out_dir / name, text)
        paths[keys[name]] = out_dir / name
    return paths


# --------------------------------------------------------------------------- version 2


class _NamesV2:
    """Unique names made of real English words (`demo_words`): people, places, books, companies.

    Every value drawn is new, and no two values share a whole word sequence that would make one
    an answer inside another's passage (checked again on the whole corpus after the build).
    """

    def __init__(self, rng: random.Random):
        from ragdistill.data import demo_words as w

        self.rng, self.w = rng, w
        self.used: set[str] = set()
        self.place_words: set[str] = set()
        # whole words a compound place name must not spell (Wal + ton = Walton, Nor + ton = Norton)
        self.reserved = (
            set(w.SURNAME_ENTITIES) | set(w.WORD_ENTITIES) | set(w.COMPANY_NAMES) | set(w.SURNAMES) | set(w.FIRST_NAMES)
        )

    def _fresh(self, make) -> str:
        for _ in range(10_000):
            v = make()
            if v not in self.used:
                self.used.add(v)
                return v
        raise RuntimeError("demo world: ran out of names; lower the sizes")  # pragma: no cover

    def place(self) -> str:
        r, w = self.rng, self.w
        for _ in range(10_000):
            v = r.choice(w.PLACE_PREFIXES) + r.choice(w.PLACE_SUFFIXES)
            if v not in self.used and v not in self.reserved:
                self.used.add(v)
                return v
        raise RuntimeError("demo world: ran out of place names; lower the sizes")  # pragma: no cover

    def make(self, kind: str) -> tuple[str, list[str]]:
        """(the value as written in the passage, its answers: the first is the training target)."""
        r, w = self.rng, self.w
        if kind == "city":
            v = self.place()
            return v, [v]
        if kind == "hills":
            core = self.place()
            return f"the {core} Hills", [core, f"{core} Hills"]
        if kind == "lake":
            core = self.place()
            return f"Lake {core}", [core, f"Lake {core}"]
        if kind == "person":
            v = self._fresh(lambda: f"{r.choice(w.FIRST_NAMES)} {r.choice(w.SURNAMES)}")
            return v, [v]
        if kind == "book":
            core = self._fresh(lambda: f"{r.choice(w.BOOK_ADJECTIVES)} {r.choice(w.BOOK_NOUNS)}")
            return f"The {core}", [core, f"The {core}"]
        if kind == "company":

            def company() -> str:
                a, b = r.sample(w.COMPANY_NAMES, 2)
                return f"{a} {r.choice(w.COMPANY_SUFFIXES)}" if r.random() < 0.5 else f"{a} and {b}"

            v = self._fresh(company)
            return v, [v]
        raise ValueError(kind)

    def entities(self, counts: dict[str, int]) -> dict[str, list[str]]:
        """Entity names per kind: one-word names from `demo_words` (one reader token each), all distinct.

        People and companies share the surname pool, countries, rivers and inventions the word pool.
        """
        w = self.w
        pools = {"surname": list(w.SURNAME_ENTITIES), "word": list(w.WORD_ENTITIES)}
        out: dict[str, list[str]] = {}
        for kind in KINDS:
            pool = pools[_ENTITY_POOL[kind]]
            picked = self.rng.sample(pool, counts[kind])
            for name in picked:
                pool.remove(name)
            self.used.update(picked)
            out[kind] = picked
        return out


_ENTITY_POOL = {"country": "word", "person": "surname", "company": "surname", "river": "word", "invention": "word"}


def entity_capacity_v2() -> dict[str, int]:
    """How many entities the version-2 name pools hold: per pool, shared by its kinds."""
    from ragdistill.data import demo_words as w

    return {"surname": len(w.SURNAME_ENTITIES), "word": len(w.WORD_ENTITIES)}


def _title_v2(kind: str, name: str) -> str:
    return name[0].upper() + name[1:]


def _named_v2(kind: str, name: str) -> str:
    """How a question names the entity (rivers and inventions take their article in the template)."""
    return name


def _generate_v2(seed: int, config: DemoConfig) -> DemoWorld:
    """Version 2: real-word names, many hard negatives, ~2,600 questions (see `_readme_v2`)."""
    from ragdistill.data import demo_words as w

    rng = random.Random(seed)
    names = _NamesV2(rng)
    entities = names.entities(config.counts())
    raw: list[tuple[str, str, int | None]] = []
    facts: list[DemoFact] = []

    def refer(kind: str) -> str:
        return w.REFER[kind]

    for kind in KINDS:
        for ent in entities[kind]:
            title = _title_v2(kind, ent)
            R = refer(kind)
            for attr in w.ATTRIBUTES_V2[kind]:
                value, answers = names.make(attr["value"])
                facts.append(DemoFact(ent, kind, attr["name"], answers, passage_id=""))
                raw.append((title, _fill(rng.choice(attr["passages"]), {"R": R, "V": value}), len(facts) - 1))
                # near-duplicates: the same relation of the same entity with another value (not the answer)
                if config.max_distractors and rng.random() < config.near_duplicate_prob:
                    n_near = rng.randint(1, min(config.max_distractors, len(attr["near"])))
                    for template in rng.sample(attr["near"], n_near):
                        other, _ = names.make(attr["value"])
                        raw.append((title, _fill(template, {"R": R, "V": other}), None))
            if rng.random() < config.filler_prob:
                raw.append((title, _fill(rng.choice(w.FILLERS_V2[kind]), {"R": R}), None))
            others = [e for e in entities[kind] if e != ent]
            if others and rng.random() < config.mention_prob:
                host = rng.choice(others)  # a sibling's passage that names this entity in passing
                said = ("the " + ent) if kind in ("river", "invention") else ent
                raw.append((_title_v2(kind, host), _fill(rng.choice(w.MENTIONS_V2[kind]), {"R": R, "E": said}), None))

    raw = [
        (title, text if len(text.split()) >= w.TAIL_BELOW_WORDS else f"{text} {rng.choice(w.TAILS_V2)}", fact)
        for title, text, fact in raw
    ]
    templates = {(kind, a["name"]): a["questions"] for kind in KINDS for a in w.ATTRIBUTES_V2[kind]}
    world = _assemble(rng, seed, config, raw, facts, templates, _named_v2)
    _check_answers_token_unique(world)
    return world


def _check_answers_token_unique(world: DemoWorld) -> None:
    """Every answer is in its gold passage and in no other one (DPR token-sequence match, `has_answer`).

    Candidates are the passages holding the answer's rarest word; `has_answer` decides on them.
    """
    from ragdistill.retrieval.metrics import dpr_tokens, has_answer

    by_word: dict[str, list[Passage]] = {}
    for p in world.passages:
        for tok in set(dpr_tokens(p.as_text())):
            by_word.setdefault(tok, []).append(p)
    texts = world.passage_by_id()
    for fact in world.facts:
        gold = texts[fact.passage_id]
        if fact.answers[0] not in gold.text:
            raise RuntimeError(
                f"demo world: answer {fact.answers[0]!r} not verbatim in its gold passage"
            )  # pragma: no cover
        for answer in fact.answers:
            rarest = min(dpr_tokens(answer), key=lambda t: len(by_word.get(t, ())))
            where = [p.id for p in by_word.get(rarest, []) if has_answer(p.as_text(), [answer])]
            if where != [fact.passage_id]:  # pragma: no cover - a generator bug
                raise RuntimeError(
                    f"demo world: answer {answer!r} of {fact.entity}/{fact.attribute} found in passages {where}, expected only {fact.passage_id}"
                )


def _readme_v2(world: DemoWorld) -> str:
    c = world.config
    n_q = {s: len(world.questions[s]) for s in SPLITS}
    n_gold = len(world.facts)
    by_id = world.passage_by_id()
    example = (
        world.questions["dev"][0] if world.questions["dev"] else next(q for s in SPLITS for q in world.questions[s])
    )
    gold = by_id[world.gold[example.id]]
    same_title = [p for p in world.passages if p.title == gold.title and p.id != gold.id][:3]
    lines = [
        f"# ragdistill demo world, version {c.version}",
        "",
        f"Version {c.version} of the fictional encyclopedia generated by `ragdistill data demo --version {c.version} "
        f"--seed {world.seed}` (module `ragdistill.data.demo`). Names are made of real English words (first names, "
        "surnames, place words such as Ash + bury) so that readers' tokenizers keep them whole, but every person, "
        "place and thing is invented: a reader cannot answer without retrieving the right passage. The same seed "
        "and version give byte-identical files; `manifest.json` holds the version, seed, counts and the sha256 of "
        "every file.",
        "",
        "| file | format | records |",
        "|---|---|---|",
        f"| `corpus.jsonl` | passages JSONL `{{id, title, text}}` | {len(world.passages)} passages |",
        f"| `corpus.tsv` | DPR `psgs_w100.tsv` layout: `id<TAB>text<TAB>title` with a header | {len(world.passages)} passages |",
        *(
            f"| `{s}.jsonl` | questions JSONL `{{id, question, answers, gold_passage_id, entity, kind, attribute}}` | {n_q[s]} questions |"
            for s in SPLITS
        ),
        "| `manifest.json` | version, seed, sizes, counts, sha256 of each file | |",
        "",
        f"Entities: {c.countries} countries, {c.people} people, {c.companies} companies, {c.rivers} rivers, "
        f"{c.inventions} inventions, four asked attributes each. {n_gold} passages each state one fact (the gold "
        f"passage of its questions); the other {len(world.passages) - n_gold} are hard negatives:",
        "- the other facts of the same entity (same title; several attributes share a value type, e.g. a "
        "country's capital and its main port are both towns, a company's founder and chief executive both people);",
        "- near-duplicate facts: the same relation of the same entity with another value (a former seat of the "
        "kings, a previous chief executive, a later book that sold poorly);",
        "- the same attribute of every sibling entity;",
        "- passages about an entity that state no asked fact, and passages about a sibling that mention the entity in passing.",
        "",
        "Every entity name is one word (one token of the bundled reader's tokenizer: Copper, Harrison, the Fern). "
        'Passages name their entity once, in the title, and say "the nation", "the writer", "the firm", ... '
        "in the text; short passages get a neutral second sentence. Questions name the entity and are worded "
        'unlike the passages: no word of a question template ("capital", "city", "founder") occurs in a '
        f'passage template ("What is the capital of X?" against "The nation is governed from Y"); '
        f"{c.questions_per_fact} paraphrases are asked per fact.",
        "",
        "Properties (checked when the world is built):",
        "- each answer occurs (DPR token-sequence match, `ragdistill.retrieval.metrics.has_answer`) in its gold "
        "passage and in no other passage;",
        f"- train/dev/test are split by fact (entity, attribute): no fact is asked in two splits "
        f"({c.train_fraction:.0%}/{c.dev_fraction:.0%}/{1 - c.train_fraction - c.dev_fraction:.0%}).",
        "",
        "Example (dev):",
        "",
        f"- question: {example.question}  answers: {example.answers}",
        f"- gold passage {gold.id}: {gold.title}. {gold.text}",
        *(f"- hard negative {p.id}: {p.title}. {p.text}" for p in same_title),
        "",
        "Use it like any corpus: `ragdistill data inspect corpus.jsonl`, "
        "`ragdistill index --corpus corpus.jsonl ...`, `--questions dev.jsonl`.",
        "",
    ]
    return "\n".join(lines)
