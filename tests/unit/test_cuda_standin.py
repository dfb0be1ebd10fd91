"""The CUDA stand-in (ftdoctor.runtime.cuda_standin): where torch has no GPU, a script's moves and allocations that
name CUDA land on the CPU; nothing else changes, and everything is put back."""

from __future__ import annotations

import pytest
import torch

from ftdoctor.runtime.cuda_standin import CudaStandIn, asked_for_missing_cuda, is_cuda

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the stand-in is for machines without a GPU")


@pytest.fixture
def standin(tmp_path):
    s = CudaStandIn(str(tmp_path))
    s.install(torch)
    try:
        yield s
    finally:
        s.restore()


def test_moves_and_allocations_that_name_cuda_land_on_the_cpu(standin):
    model = torch.nn.Linear(3, 2).cuda()
    x = torch.zeros(4, 3, device="cuda")
    y = torch.tensor([1.0, 2.0], device=torch.device("cuda", 0)).to("cuda:0", non_blocking=True)
    z = torch.ones(2).cuda(0).to(0)
    assert model(x).device.type == "cpu" and y.device.type == "cpu" and z.device.type == "cpu"
    model.to(torch.device("cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_device(0)
    assert torch.cuda.memory_allocated() == 0 and torch.cuda.max_memory_allocated() == 0
    assert standin.facts()["redirected"] == 7


def test_nothing_else_changes(standin):
    t = torch.arange(6).reshape(2, 3)
    assert t.to(torch.float16).dtype == torch.float16 and t.to("cpu") is t
    assert t.to(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    assert torch.nn.Linear(2, 2).to(torch.bfloat16).weight.dtype == torch.bfloat16
    with torch.device("meta"):
        assert torch.tensor([1, 2]).device.type == "meta"  # the device context still sees its constructors
    assert torch.cuda.is_available() is False and standin.facts() is None


def test_restore_puts_torch_back(tmp_path):
    before = (torch.Tensor.to, torch.nn.Module.to, torch.zeros, torch.cuda.synchronize)
    s = CudaStandIn(str(tmp_path))
    s.install(torch)
    assert torch.zeros is not before[2]
    s.restore()
    assert (torch.Tensor.to, torch.nn.Module.to, torch.zeros, torch.cuda.synchronize) == before
    with pytest.raises((AssertionError, RuntimeError)):
        torch.zeros(1, device="cuda")


def test_the_first_place_the_script_asked_is_its_own_line(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import torch\nx = torch.ones(2)\ny = x.cuda()\n")
    s = CudaStandIn(str(tmp_path))
    s.install(torch)
    try:
        exec(compile(script.read_text(), str(script), "exec"), {})
    finally:
        s.restore()
    assert s.facts() == {"redirected": 1, "dropped": [], "optimizer": None, "file": str(script), "line": 3}


def test_what_torch_raises_without_cuda_is_recognised():
    with pytest.raises(Exception) as err:
        torch.zeros(1).cuda()
    assert asked_for_missing_cuda(err.value)
    assert not asked_for_missing_cuda(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    chained = ValueError("could not place the model")
    chained.__cause__ = err.value
    assert asked_for_missing_cuda(chained)


@pytest.mark.parametrize(
    "device, expected",
    [
        ("cuda", True),
        ("cuda:1", True),
        (torch.device("cuda", 0), True),
        (0, True),
        ("cpu", False),
        (torch.device("meta"), False),
        (True, False),
        ("mps", False),
    ],
)
def test_what_names_cuda(device, expected):
    assert is_cuda(device) is expected


def test_gpu_only_loading_is_left_out(tmp_path):
    import transformers
    import transformers.modeling_utils as mu

    from ftdoctor.runtime import cuda_standin

    config = transformers.BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20
    )
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "m")
    s = CudaStandIn(str(tmp_path))
    s.install_loading(mu)
    try:
        quant = transformers.BitsAndBytesConfig(load_in_4bit=True)
        m = transformers.AutoModelForMaskedLM.from_pretrained(
            tmp_path / "m", quantization_config=quant, device_map={"": 0}
        )
        kept = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "m", device_map="cpu")
    finally:
        s.restore()
    assert m.device.type == "cpu" and not getattr(m, "is_loaded_in_4bit", False) and kept.device.type == "cpu"
    assert s.dropped == [
        "the model loaded without its 4-bit bitsandbytes `quantization_config`",
        "the model loaded on the CPU, not by `device_map={'': 0}`",
    ]
    assert cuda_standin._places_on_gpu("auto") is False and cuda_standin._places_on_gpu({"encoder": "cuda:1"})


def test_a_bitsandbytes_optimizer_without_bitsandbytes_trains_as_adamw(tmp_path, monkeypatch):
    import transformers.training_args as ta

    from ftdoctor.runtime import cuda_standin

    monkeypatch.setattr(cuda_standin, "_bitsandbytes_missing", lambda: True)
    s = CudaStandIn(str(tmp_path))
    s.install_arguments(ta)
    try:
        args = ta.TrainingArguments(str(tmp_path / "out"), optim="paged_adamw_8bit", report_to=[])
        plain = ta.TrainingArguments(str(tmp_path / "out"), optim="adafactor", report_to=[])
    finally:
        s.restore()
    assert str(getattr(args.optim, "value", args.optim)) == "adamw_torch" and s.optimizer == (
        "paged_adamw_8bit",
        "adamw_torch",
    )
    assert str(getattr(plain.optim, "value", plain.optim)) == "adafactor"
