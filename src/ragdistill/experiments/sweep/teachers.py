"""The teachers: built-in ones of graded quality, extra ones by name or path, references; re-initialising layers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragdistill.errors import ConfigError
from ragdistill.experiments.sweep.options import SweepOptions

DECODER, FID = "decoder", "fid"
ATTENTION_SIGNALS = ("attention", "attention-debiased")


@dataclass
class Teacher:
    """One teacher: which reader (and how it is made), which signal, with which options."""

    name: str
    family: str = DECODER  # decoder | fid | auto (an extra reader: detected when it loads)
    source: str = "offshelf"  # offshelf | step1 | reinit | fid-offshelf | fid-fit | path
    fraction: float | None = None  # step1: the share of the step-1 budget
    path: str | None = None  # source "path": the reader's name or directory
    signal: str = "attention"  # attention | attention-debiased | perplexity
    layers: list[int] | None = None
    value_norm: bool = True
    orders: int = 1  # attention-debiased: passage orders
    reinit_top: int = 0
    reinit_seed: int = 0
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def signal_options(self) -> dict[str, Any]:
        if self.signal == "perplexity":
            return {}
        opts: dict[str, Any] = {"layers": self.layers, "value_norm": self.value_norm, "aggregation": "sum"}
        if self.signal == "attention-debiased":
            opts["orders"] = self.orders
        return opts


def _frac_name(f: float) -> str:
    return f"step1-{float(f)}"


def builtin_teachers(sweep: dict[str, Any]) -> dict[str, Teacher]:
    """Every built-in teacher the sweep config can name, by name."""
    d = sweep["degraded"]
    src = float(d["from"])
    base = dict(source="step1", fraction=src)
    out = {
        "offshelf": Teacher("offshelf", DECODER, "offshelf", description="the off-the-shelf reader (decoder reference)")
    }
    for f in sweep["snapshots"]:
        out[_frac_name(f)] = Teacher(
            _frac_name(f), DECODER, "step1", fraction=f, description=f"step-1 reader after {f:.0%} of its budget"
        )
    tag = _frac_name(src)
    out["layers-subset"] = Teacher(
        "layers-subset",
        DECODER,
        **base,
        layers=list(d["layers"]),
        description=f"{tag}, attention from layers {list(d['layers'])} only",
    )
    out["reinit-top"] = Teacher(
        "reinit-top",
        DECODER,
        "reinit",
        fraction=src,
        reinit_top=int(d["reinit_top"]),
        reinit_seed=int(d["reinit_seed"]),
        description=f"{tag} with its top {d['reinit_top']} layers re-initialised (seed {d['reinit_seed']})",
    )
    out["no-value-norm"] = Teacher(
        "no-value-norm",
        DECODER,
        **base,
        value_norm=False,
        description=f"{tag}, value-norm weighting off (attention probabilities alone)",
    )
    out["perplexity"] = Teacher(
        "perplexity", DECODER, **base, signal="perplexity", description=f"{tag}, perplexity signal (METHOD §3.4)"
    )
    out["debiased"] = Teacher(
        "debiased",
        DECODER,
        **base,
        signal="attention-debiased",
        orders=int(d["orders"]),
        description=f"{tag}, attention averaged over {d['orders']} passage orders (position-debiased)",
    )
    out["fid-offshelf"] = Teacher(
        "fid-offshelf", FID, "fid-offshelf", description="the offline FiD reader, not fitted (FiD reference)"
    )
    out["fid-fitted"] = Teacher("fid-fitted", FID, "fid-fit", description="the FiD reader after reader-only fitting")
    return out


def extra_teacher(spec: str) -> Teacher:
    """A teacher from `--teachers NAME_OR_PATH` (attention signal, family detected when it loads)."""
    stem = Path(spec.rstrip("/")).name or spec
    if stem == "reader":  # runs/x/reader -> x
        stem = Path(spec.rstrip("/")).parent.name or stem
    name = "extra-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
    return Teacher(name, "auto", "path", path=spec, description=f"--teachers {spec}")


def select_teachers(sweep: dict[str, Any], options: SweepOptions) -> list[Teacher]:
    known = builtin_teachers(sweep)
    out: list[Teacher] = []
    for name in sweep["teachers"]:
        if name not in known:
            raise ConfigError("teachers", f"unknown teacher {name!r}; the built-in teachers are: {', '.join(known)}")
        out.append(known[name])
    for spec in options.teachers:
        if spec in known:
            if all(t.name != spec for t in out):
                out.append(known[spec])
            continue
        t = extra_teacher(spec)
        if any(x.name == t.name for x in out):
            raise ConfigError("teachers", f"two teachers would be named {t.name!r}")
        out.append(t)
    if options.only:
        names = {t.name for t in out}
        bad = [n for n in options.only if n not in names]
        if bad:
            raise ConfigError("only", f"unknown teacher {bad[0]!r}; the teachers are: {', '.join(sorted(names))}")
        out = [t for t in out if t.name in options.only]
    if not out:
        raise ConfigError("teachers", "no teacher to run")
    return out


def reference_of(teacher: Teacher, names: set[str]) -> str | None:
    """The indicators' reference: the off-the-shelf teacher of the same family (None for a reference itself)."""
    ref = "fid-offshelf" if teacher.family == FID else "offshelf"
    if teacher.name == ref or ref not in names:
        return None
    return ref


def decoder_layers(model: Any):
    """The ModuleList of a decoder-only model's transformer blocks (Llama/Qwen/Mistral, Falcon/GPT-2 style)."""
    for path in ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise ConfigError("degraded.reinit_top", f"cannot find the decoder layers of {type(model).__name__}")


def reinit_top_layers(model: Any, n: int, seed: int = 0) -> list[int]:
    """Re-initialise the top `n` decoder layers in place with the model's own initialiser, seeded; their indices."""
    import torch

    layers = decoder_layers(model)
    if not 1 <= n <= len(layers):
        raise ConfigError("degraded.reinit_top", f"must lie in 1..{len(layers)} (the reader's layers), got {n}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        idx = list(range(len(layers) - n, len(layers)))
        with torch.no_grad():
            for i in idx:
                for module in layers[i].modules():
                    if isinstance(module, torch.nn.Linear):
                        std = float(getattr(model.config, "initializer_range", 0.02))
                        module.weight.normal_(0.0, std)
                        if module.bias is not None:
                            module.bias.zero_()
                    elif hasattr(module, "weight") and module.weight is not None and module.weight.dim() == 1:
                        module.weight.fill_(1.0)  # norms back to identity
                        if getattr(module, "bias", None) is not None:
                            module.bias.zero_()
    finally:
        torch.random.set_rng_state(gen_state)
    return idx
