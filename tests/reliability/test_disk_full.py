"""A checkpoint or index write that fails midway (disk full) leaves the previous one intact and loadable."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from ragdistill.training import checkpoint as ckpt
from ragdistill.utils.io import atomic_file
from tests.reliability.conftest import count


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 4)


@pytest.mark.parametrize("fail_at", ["safetensors", "torch.save", "state", "manifest"])
def test_failing_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, fail_at):
    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(
        root, 1, modules={"retriever": _model(0)}, objects={"rng": {"t": torch.arange(3)}}, state={"a": 1}
    )
    before = _tree(root)
    import safetensors.torch

    if fail_at == "safetensors":
        monkeypatch.setattr(safetensors.torch, "save_model", _enospc)
    elif fail_at == "torch.save":
        monkeypatch.setattr(torch, "save", _enospc)
    else:  # the JSON files are written last; fail on state.json or on the manifest itself
        real = Path.write_text

        def failing(self, *a, **k):
            if self.name == ("state.json" if fail_at == "state" else "manifest.json"):
                real(self, '{"step": ', encoding="utf-8")  # half a file, then the disk is full
                _enospc()
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(OSError) as err:
        ckpt.save_checkpoint(
            root,
            2,
            modules={"retriever": _model(1)},
            objects={"rng": {"t": torch.arange(3)}},
            state={"a": 2},
            keep_last=1,
        )
    count("failed writes tried")
    assert err.value.errno == errno.ENOSPC
    assert _tree(root) == before  # byte for byte, nothing added, nothing pruned
    assert [p.name for p in root.iterdir()] == ["step-000000001"]  # no temporary debris either
    assert ckpt.latest_complete(root) == ckpt.checkpoint_dir(root, 1)
    m = _model(5)
    ckpt.load_module(ckpt.latest_complete(root), "retriever", m)
    assert torch.equal(m.weight, _model(0).weight)


def test_failing_atomic_file_keeps_the_old_file(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_text("old\n")
    with pytest.raises(OSError):
        with atomic_file(p) as f:
            f.write("new, half")
            _enospc()
    count("failed writes tried")
    assert p.read_text() == "old\n" and [x.name for x in tmp_path.iterdir()] == ["metrics.json"]


@pytest.fixture()
def built_index(tmp_path):
    from ragdistill.retrieval.index import PassageIndex
    from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages

    retriever = make_tiny_retriever()
    out = tmp_path / "index"
    PassageIndex.build(synthetic_passages(30), retriever, out, progress=False).close()
    return out, retriever


@pytest.mark.parametrize("op", ["rebuild", "save_after_refresh"])
def test_failing_index_write_keeps_the_previous_index(built_index, monkeypatch, op):
    import faiss

    from ragdistill.retrieval.index import PassageIndex
    from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages

    out, retriever = built_index
    before = _tree(out)
    monkeypatch.setattr(faiss, "write_index", _enospc)
    with pytest.raises(OSError):
        if op == "rebuild":
            PassageIndex.build(synthetic_passages(50, seed=3), retriever, out, progress=False)
        else:
            index = PassageIndex.load(out, retriever=retriever)
            moved = make_tiny_retriever(seed=7)
            index.refresh(moved)
            index.save(out)
    count("failed writes tried")
    monkeypatch.undo()
    assert _tree(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".index")]  # temporary dirs cleaned up
    index = PassageIndex.load(out, retriever=retriever)
    assert len(index) == 30
    index.close()


@pytest.mark.skipif(
    not (shutil.which("mount") and os.geteuid() == 0 and os.path.isdir("/dev/shm")),
    reason="needs a small tmpfs; the monkeypatched writers above cover the logic",
)
def test_real_full_filesystem(tmp_path):
    """A real 1 MiB tmpfs: a checkpoint bigger than the free space fails with ENOSPC, the old one stays."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (no privileges in this container)")
    try:
        root = mnt / "checkpoints"
        ckpt.save_checkpoint(root, 1, modules={"retriever": torch.nn.Linear(16, 16)})
        before = _tree(root)
        with pytest.raises(Exception, match="No space left"):  # OSError, or safetensors' own error type
            ckpt.save_checkpoint(
                root, 2, modules={"retriever": torch.nn.Linear(512, 512)}, keep_last=1
            )  # 1 MiB of weights
        count("failed writes tried")
        assert _tree(root) == before and ckpt.latest_complete(root) == ckpt.checkpoint_dir(root, 1)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_cli_reports_a_full_disk_without_a_traceback(tmp_path, monkeypatch, capsys):
    """`ragdistill index` on a full disk: exit 2, a message that says what to do, no partial index."""
    import json

    import faiss

    from ragdistill.cli.main import main
    from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages

    retriever_dir = tmp_path / "retriever"
    make_tiny_retriever(seed=0).save_pretrained(retriever_dir)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in synthetic_passages(12, seed=0)
        )
    )

    class WrappedError(Exception):  # a library's own type around the OS error, as safetensors and FAISS do
        pass

    def full(*args, **kwargs):
        raise WrappedError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr(faiss, "write_index", full)
    out = tmp_path / "index"
    code = main(
        ["index", "--corpus", str(corpus), "--retriever", str(retriever_dir), "--out", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "the disk is full" in err and "Traceback" not in err and "free some space" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".index")]
    count("failed writes tried")
