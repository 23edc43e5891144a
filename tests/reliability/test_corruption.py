"""Truncated or corrupted checkpoint and index files: detected by the manifest checksums, refused with a
message naming the file; resume falls back to the previous complete checkpoint and loses nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from ragdistill.errors import InputError, RagdistillError
from ragdistill.training import checkpoint as ckpt
from tests.reliability.conftest import count


def corrupt(path: Path, mode: str, where: float, data: bytes) -> None:
    """Damage one file: truncate, flip a byte, append junk, overwrite with junk, empty it or delete it."""
    raw = path.read_bytes()
    pos = min(len(raw) - 1, int(len(raw) * where)) if raw else 0
    if mode == "truncate":
        path.write_bytes(raw[:pos])
    elif mode == "flip":
        path.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1 :] if raw else b"\x00")
    elif mode == "append":
        path.write_bytes(raw + (data or b"\x00"))
    elif mode == "junk":
        path.write_bytes((data or b"\x01") * (1 + len(raw) // max(1, len(data or b"x"))))
    elif mode == "empty":
        path.write_bytes(b"")
    elif mode == "delete":
        path.unlink()


MODES = st.sampled_from(["truncate", "flip", "append", "junk", "empty", "delete"])


# --------------------------------------------------------------------------- checkpoints


def _save(root: Path, step: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    ckpt.save_checkpoint(
        root,
        step,
        modules={"retriever": model},
        tensors={"snap": {"w": torch.randn(3)}},
        objects={"optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state()}},
        state={"examples": step * 2},
        keep_last=3,
    )


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpts")
    _save(root, 1, 0)
    _save(root, 2, 1)
    return root


@given(
    name=st.sampled_from(
        ["retriever.safetensors", "snap.safetensors", "optimizer.pt", "rng.pt", "state.json", "manifest.json"]
    ),
    mode=MODES,
    where=st.floats(0, 1),
    data=st.binary(min_size=1, max_size=16),
)
@settings(max_examples=60)
def test_corrupted_checkpoint_is_refused_and_resume_falls_back(
    two_checkpoints, tmp_path_factory, name, mode, where, data
):
    root = tmp_path_factory.mktemp("c") / "checkpoints"
    shutil.copytree(two_checkpoints, root)
    newest = ckpt.checkpoint_dir(root, 2)
    before = (newest / name).read_bytes()
    corrupt(newest / name, mode, where, data)
    if (newest / name).is_file() and (newest / name).read_bytes() == before:
        return  # e.g. junk equal to the content: nothing was damaged
    count("corrupted files tried")
    problems = ckpt.verify_checkpoint(newest)
    assert problems, f"{mode} of {name} went unnoticed"
    assert any(name in p or "manifest.json" in p for p in problems), problems
    assert ckpt.latest_complete(root) == ckpt.checkpoint_dir(root, 1)  # the previous complete checkpoint
    assert not ckpt.verify_checkpoint(ckpt.checkpoint_dir(root, 1))  # ... and it is intact
    shutil.rmtree(root.parent, ignore_errors=True)


def test_loading_a_corrupted_checkpoint_directly_is_refused(two_checkpoints, tmp_path):
    root = tmp_path / "checkpoints"
    shutil.copytree(two_checkpoints, root)
    path = ckpt.checkpoint_dir(root, 2)
    f = path / "retriever.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF  # a flipped bit in the weights: a valid safetensors file, wrong numbers
    f.write_bytes(bytes(raw))
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    with pytest.raises(InputError, match="retriever.safetensors"):
        ckpt.load_module(path, "retriever", model)


# --------------------------------------------------------------------------- index


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    from ragdistill.retrieval.index import PassageIndex
    from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages

    out = tmp_path_factory.mktemp("idx") / "index"
    retriever = make_tiny_retriever()
    PassageIndex.build(synthetic_passages(40), retriever, out, progress=False).close()
    return out, retriever


@given(
    name=st.sampled_from(["index.faiss", "passages.sqlite", "manifest.json"]),
    mode=MODES,
    where=st.floats(0, 1),
    data=st.binary(min_size=1, max_size=16),
    verify=st.booleans(),
)
@settings(max_examples=60)
def test_corrupted_index_is_refused(tiny_index, tmp_path_factory, name, mode, where, data, verify):
    from ragdistill.retrieval.index import PassageIndex

    src, retriever = tiny_index
    path = tmp_path_factory.mktemp("i") / "index"
    shutil.copytree(src, path)
    before = (path / name).read_bytes()
    corrupt(path / name, mode, where, data)
    if (path / name).is_file() and (path / name).read_bytes() == before:
        return
    count("corrupted files tried")
    try:
        index = PassageIndex.load(path, retriever=retriever, verify=verify)
    except RagdistillError as exc:
        assert str(path) in str(exc), str(exc)  # names the directory or the file in it
    else:
        # only a load that skipped the checksums (verify=False, `--no-verify`) may miss damage, and then
        # only damage that FAISS and SQLite themselves cannot see (or the manifest's unused fields)
        assert not verify or name == "manifest.json", f"{mode} of {name} loaded with verify=True"
        try:
            index.retrieve(retriever, ["river castle"], 3)
        except RagdistillError:
            pass
        except Exception as exc:  # noqa: BLE001 - sqlite or faiss error on a damaged file read lazily
            if verify:
                raise
            assert name == "passages.sqlite", exc
        index.close()
    shutil.rmtree(path.parent, ignore_errors=True)


def _copy_index(tiny_index, tmp_path) -> Path:
    path = tmp_path / "index"
    shutil.copytree(tiny_index[0], path)
    return path


def _flip_in_passage_text(path: Path) -> None:
    """Flip one bit inside a stored passage's text: SQLite still reads the file, only the checksum can tell."""
    from tests.retrieval.tiny import synthetic_passages

    raw = bytearray(path.read_bytes())
    needle = synthetic_passages(40)[17].text.encode("utf-8")
    pos = raw.find(needle)
    assert pos > 0, "passage text not found in the SQLite file"
    raw[pos + len(needle) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", ["index.faiss", "passages.sqlite"])
def test_bit_flip_in_an_index_file_is_refused_on_load(tiny_index, tmp_path, name):
    """Both data files alike: a one-bit change is refused by `load` (before any search), naming the file."""
    from ragdistill.retrieval.index import PassageIndex

    path = _copy_index(tiny_index, tmp_path)
    if name == "passages.sqlite":
        _flip_in_passage_text(path / name)
    else:
        raw = bytearray((path / name).read_bytes())
        raw[len(raw) * 2 // 3] ^= 0x01
        (path / name).write_bytes(bytes(raw))
    count("corrupted files tried")
    with pytest.raises(InputError, match="sha256") as err:
        PassageIndex.load(path, retriever=tiny_index[1])
    assert name in str(err.value)
    count("index files refused on load")


@pytest.mark.parametrize("name", ["index.faiss", "passages.sqlite"])
@pytest.mark.parametrize("verify", [True, False])
def test_truncated_index_file_is_refused_on_load(tiny_index, tmp_path, name, verify):
    """A truncated (or grown) file is refused from its recorded size: no hashing needed, also with verify=False."""
    from ragdistill.retrieval.index import PassageIndex

    path = _copy_index(tiny_index, tmp_path)
    for damage in ("truncate", "append"):
        corrupt(path / name, damage, 0.9, b"\x00" * 8)
        count("corrupted files tried")
        with pytest.raises(InputError, match="truncated") as err:
            PassageIndex.load(path, retriever=tiny_index[1], verify=verify)
        assert name in str(err.value)
        count("index files refused on load")
        shutil.copyfile(tiny_index[0] / name, path / name)
    PassageIndex.load(path, retriever=tiny_index[1]).close()  # restored: loads again


def test_unverified_load_reports_a_damaged_store_read_by_name(tiny_index, tmp_path):
    """verify=False skips the hashing only: a store whose pages are damaged is still an InputError naming it."""
    from ragdistill.retrieval.index import PassageIndex

    path = _copy_index(tiny_index, tmp_path)
    raw = bytearray((path / "passages.sqlite").read_bytes())
    page = 4096
    for i in range(page, len(raw)):  # every page after the header: SQLite cannot read any row
        raw[i] ^= 0x5A
    (path / "passages.sqlite").write_bytes(bytes(raw))
    count("corrupted files tried")
    with pytest.raises(InputError, match="passages.sqlite"):
        index = PassageIndex.load(path, verify=False)
        try:
            index.retrieve(tiny_index[1], ["river castle"], 3)
        finally:
            index.close()
    count("index files refused on load")


def test_manifest_stays_consistent_after_refresh(tiny_index, tmp_path):
    """refresh + save: the new manifest's checksums and sizes describe the files written (it loads with verify);
    the passage store is unchanged; a store damaged since the load is not blessed by a new manifest."""
    from ragdistill.retrieval.index import MANIFEST_NAME, PassageIndex
    from ragdistill.utils.io import sha256_file

    src, retriever = tiny_index
    path = _copy_index(tiny_index, tmp_path)
    before = json.loads((path / MANIFEST_NAME).read_text())
    index = PassageIndex.load(path, retriever=retriever)
    index.refresh(retriever, save_to=tmp_path / "refreshed")
    index.close()
    again = tmp_path / "refreshed"
    m = json.loads((again / MANIFEST_NAME).read_text())
    for name in ("index.faiss", "passages.sqlite"):
        assert m["files"][name] == sha256_file(again / name) and m["file_sizes"][name] == (again / name).stat().st_size
    assert m["files"]["passages.sqlite"] == before["files"]["passages.sqlite"]
    PassageIndex.load(again, retriever=retriever).close()
    index = PassageIndex.load(path, retriever=retriever)  # in place, over the directory it was loaded from
    index.refresh(retriever, save_to=path)
    index.close()
    PassageIndex.load(path, retriever=retriever).close()

    index = PassageIndex.load(path, retriever=retriever)
    _flip_in_passage_text(path / "passages.sqlite")  # damaged after the load, before the save
    count("corrupted files tried")
    with pytest.raises(InputError, match="passages.sqlite"):
        index.refresh(retriever, save_to=tmp_path / "not-saved")
    index.close()
    assert not (tmp_path / "not-saved").exists()
    count("index files refused on load")


# --------------------------------------------------------------------------- a real run


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return {
        f"{f.parent.name}/{k}": v for f in sorted(run.glob("*/model.safetensors")) for k, v in load_file(str(f)).items()
    }


def test_resume_skips_a_corrupted_newest_checkpoint_and_loses_nothing(tiny_models, tiny_world, tmp_path, caplog):
    """Train 4 steps (checkpoints 2 and 4); corrupt checkpoint 4; --resume redoes steps 2-3 from checkpoint 2
    and ends with exactly the same weights and final metrics."""
    from ragdistill.config import load_config
    from ragdistill.training.loop import train
    from tests.reliability.test_kill_resume import CONFIG, train_args

    run = tmp_path / "run"
    argv = train_args(tiny_models, tiny_world, run)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"] + ["train.steps=4"]
    cfg = load_config(CONFIG, sets)
    first = train(cfg, run, progress=False)
    want_w = _final_weights(run)
    want_eval = json.loads((run / "eval" / "metrics.json").read_text())
    assert len(want_w) > 0 and first["steps"] == 4
    newest = ckpt.checkpoint_dir(run / "checkpoints", 4)
    corrupt(newest / "retriever.safetensors", "flip", 0.7, b"")
    count("corrupted files tried")
    for sub in ("reader", "retriever", "eval"):
        shutil.rmtree(run / sub)
    (run / "completed.json").unlink()
    with caplog.at_level("WARNING"):
        again = train(cfg, run, resume=True, progress=False)
    assert "skipping checkpoint" in caplog.text and "retriever.safetensors" in caplog.text
    assert again["steps"] == 4
    got = _final_weights(run)
    assert got.keys() == want_w.keys()
    for k in got:
        assert torch.equal(got[k], want_w[k]), k
    assert json.loads((run / "eval" / "metrics.json").read_text()) == want_eval
    assert not ckpt.verify_checkpoint(ckpt.checkpoint_dir(run / "checkpoints", 4))  # rewritten whole
