import torch

from ragdistill.utils.seed import default_device


def test_auto_and_none_pick_cuda_when_present_else_cpu(monkeypatch):
    for present, expected in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda present=present: present)
        assert default_device(None) == torch.device(expected)
        assert default_device("auto") == torch.device(expected)  # what configs' runtime.device says


def test_a_named_device_is_taken_as_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device("cpu") == torch.device("cpu")
    assert default_device("cuda:1") == torch.device("cuda", 1)
