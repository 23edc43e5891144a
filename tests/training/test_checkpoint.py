"""Checkpoints: atomic, checksummed, keep-last-N, fallback to the previous intact one."""

from __future__ import annotations

import pytest
import torch

from ragdistill.config import OptimConfig
from ragdistill.errors import InputError
from ragdistill.training import checkpoint as ckpt
from ragdistill.training.optim import (
    build_optimizer,
    build_scheduler,
    load_scheduler_state,
    lr_multiplier,
    scheduler_state,
)


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight  # tied, as in small LMs


def _save(root, step, model, opt=None, keep=None):
    objects = {"optimizer": opt.state_dict()} if opt is not None else {}
    return ckpt.save_checkpoint(
        root,
        step,
        modules={"model": model},
        tensors={"snap": {"w": torch.arange(3.0)}},
        objects=objects,
        state={"note": "x"},
        keep_last=keep,
    )


def test_round_trip_with_tied_weights_and_optimizer(tmp_path):
    torch.manual_seed(0)
    m = Tied()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    m.emb.weight.sum().backward()
    opt.step()
    path = _save(tmp_path, 7, m, opt)
    assert ckpt.verify_checkpoint(path) == []
    m2 = Tied()
    ckpt.load_module(path, "model", m2)
    assert torch.equal(m2.emb.weight, m.emb.weight) and m2.head.weight is m2.emb.weight
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt.load_object(path, "optimizer"))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(ckpt.load_tensors(path, "snap")["w"], torch.arange(3.0))
    assert ckpt.read_state(path) == {"step": 7, "note": "x"}


def test_keep_last_and_leftovers(tmp_path):
    m = Tied()
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, m, keep=2)
    (tmp_path / ".step-000000005.abc.tmp").mkdir()  # debris of a save killed midway
    _save(tmp_path, 5, m, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [5, 4]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_corrupt_newest_falls_back_to_previous(tmp_path, damage, caplog):
    m = Tied()
    _save(tmp_path, 1, m)
    newest = _save(tmp_path, 2, m)
    target = newest / "model.safetensors"
    if damage == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        (newest / "manifest.json").write_text("{not json")
    assert ckpt.verify_checkpoint(newest)
    with caplog.at_level("WARNING"):
        assert ckpt.latest_complete(tmp_path) == tmp_path / "step-000000001"
    assert "skipping checkpoint" in caplog.text


def test_incomplete_and_empty(tmp_path):
    assert ckpt.latest_complete(tmp_path / "none") is None
    (tmp_path / "step-000000009").mkdir()  # no manifest: never completed
    assert ckpt.latest_complete(tmp_path) is None
    with pytest.raises(InputError, match="optimizer.pt"):
        ckpt.load_object(tmp_path / "step-000000009", "optimizer")


def test_failed_save_leaves_previous_intact(tmp_path, monkeypatch):
    m = Tied()
    _save(tmp_path, 1, m)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        _save(tmp_path, 2, m, opt=torch.optim.SGD(m.parameters(), lr=0.1))
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert ckpt.verify_checkpoint(tmp_path / "step-000000001") == []
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_schedules_by_hand():
    # warm-up 4: 1/4, 2/4, 3/4, 4/4; then linear to 0 at step 10
    assert [lr_multiplier(s, 10, 4, "linear") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_multiplier(7, 10, 4, "linear") == pytest.approx(0.5)
    assert lr_multiplier(10, 10, 4, "linear") == 0.0
    assert lr_multiplier(7, 10, 4, "cosine") == pytest.approx(0.5)
    assert lr_multiplier(5, 10, 4, "cosine") == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi / 6)).item()))
    assert lr_multiplier(9, 10, 0, "constant") == 1.0
    assert lr_multiplier(10, 10, 0, "linear", min_lr_ratio=0.1) == pytest.approx(0.1)


def test_optimizer_groups_and_scheduler_state_round_trip(tmp_path):
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    cfg = OptimConfig(name="adam", lr_reader=1e-3, lr_retriever=1e-4, warmup_steps=2, schedule="linear")
    opt = build_optimizer(
        [("reader", list(a.parameters()), 1e-3), ("retriever", list(b.parameters()), 1e-4), ("empty", [], 1.0)], cfg
    )
    assert isinstance(opt, torch.optim.Adam) and [g["name"] for g in opt.param_groups] == ["reader", "retriever"]
    sch = build_scheduler(opt, cfg, total_steps=10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-4, 5e-5])
    for _ in range(3):
        opt.step()
        sch.step()
    state = scheduler_state(sch)
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    opt2 = build_optimizer([("reader", list(a.parameters()), 1e-3), ("retriever", list(b.parameters()), 1e-4)], cfg)
    sch2 = build_scheduler(opt2, cfg, total_steps=10)
    load_scheduler_state(sch2, loaded)
    assert sch2.last_epoch == 3
    sch2.step()
    sch.step()
    assert sch2.get_last_lr() == pytest.approx(sch.get_last_lr())
    with pytest.raises(ValueError, match="nothing to train"):
        build_optimizer([("reader", [], 1e-3)], cfg)
