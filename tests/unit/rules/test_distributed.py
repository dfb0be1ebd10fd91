"""The distributed stage's rules, one check each on per-rank facts built by hand in the shape each rank records
(ftdoctor.runtime.ranks.collect and failure_facts) and on the script's source."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftdoctor.core.registry import Skip
from ftdoctor.core.source import Site
from ftdoctor.runtime.ranks import batch_keys

from ._build_b import (
    bert,
    call,
    capture,
    line_of,
    one_thread,  # noqa: F401  (the fixture below)
    pipeline,
    rank_facts,
    write_script,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _pipeline(script=None, model=None, **capture_kw):
    return pipeline(model if model is not None else bert(), capture=capture(script, **capture_kw))


def test_a_collective_only_one_rank_entered():
    facts = rank_facts(
        {
            "outcome": "error",
            "site": "train.py:41",
            "exception": "RuntimeError: [../gloo/transport/tcp/pair.cc:534] Timed out waiting 5000ms",
        },
        {"outcome": "training"},
    )
    f = call("FTD958", rank_facts=facts).one("FTD958")
    assert f.detail == (
        "The ranks did not meet in the same collective: rank 0 waited at train.py:41; rank 1 reached training."
    )
    assert f.location == "train.py:41" and "outside `if rank == 0:`" in f.fix and f.evidence["missing"] == []


def test_a_rank_that_never_reported():
    (rank0,) = rank_facts({"outcome": "training"})
    rank0["world_size"] = 2
    f = call("FTD958", rank_facts=[rank0]).one("FTD958")
    assert "rank 1 never reported (it may still be waiting)" in f.detail and f.evidence["missing"] == [1]


def test_ranks_that_all_reached_training_met():
    assert call("FTD958", rank_facts=rank_facts({}, {})).findings == []


def test_a_single_process_run_is_not_judged():
    with pytest.raises(Skip, match="--nproc"):
        call("FTD958", rank_facts=None)


def _batch(start):
    ids = torch.arange(start, start + 12).reshape(3, 4)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_every_rank_draws_the_same_rows():
    keys = batch_keys(_batch(10))
    facts = rank_facts({"sample_keys": keys}, {"sample_keys": keys}, sampler="RandomSampler", wrapper="ddp")
    f = call("FTD950", rank_facts=facts, pipeline=_pipeline()).one("FTD950")
    assert f.detail == "Ranks 0, 1 drew the same 3 rows in their first batches: every rank trains on the same data."
    assert "sampler=DistributedSampler(train)" in f.fix and f.evidence == {
        "rows_compared": 3,
        "sampler": "RandomSampler",
    }


def test_every_rank_draws_the_same_rows_of_a_tensor_dataset():
    ids = _batch(10)["input_ids"]
    keys = batch_keys([ids, torch.tensor([0, 1, 0])])  # what a DataLoader over a TensorDataset yields
    facts = rank_facts({"sample_keys": keys}, {"sample_keys": keys}, sampler="RandomSampler")
    assert call("FTD950", rank_facts=facts, pipeline=_pipeline()).codes == ["FTD950"]


def test_ranks_drawing_other_rows_of_equal_contents_are_not_the_same_data():
    """A dataset with repeated rows: the ranks' first batches hold the same contents at other indices."""
    keys = batch_keys(_batch(10))
    facts = rank_facts(
        {"sample_keys": keys, "epoch_indices": [0, 1, 2, 3]},
        {"sample_keys": keys, "epoch_indices": [4, 5, 6, 7]},
        dataset_len=8,
    )
    assert call("FTD950", rank_facts=facts, pipeline=_pipeline()).findings == []
    same = rank_facts(
        {"sample_keys": keys, "epoch_indices": [3, 0, 2, 1]},
        {"sample_keys": keys, "epoch_indices": [3, 0, 2, 1]},
        dataset_len=8,
    )
    assert call("FTD950", rank_facts=same, pipeline=_pipeline()).codes == ["FTD950"]


def test_ranks_with_their_own_rows_and_a_whole_epoch_between_them():
    facts = rank_facts(
        {"sample_keys": batch_keys(_batch(10)), "epoch_indices": list(range(8))},
        {"sample_keys": batch_keys(_batch(40)), "epoch_indices": list(range(8, 16))},
        dataset_len=16,
    )
    assert call("FTD950", rank_facts=facts, pipeline=_pipeline()).findings == []


def test_data_sharded_twice():
    facts = rank_facts(
        {"sample_keys": batch_keys(_batch(10)), "epoch_indices": [0, 2, 4, 6]},
        {"sample_keys": batch_keys(_batch(40)), "epoch_indices": [8, 10, 12, 14]},
        dataset_len=16,
    )
    f = call("FTD951", rank_facts=facts, pipeline=_pipeline()).one("FTD951")
    assert "Together the 2 ranks draw 8 of the 16 rows in an epoch (each 4)" in f.detail
    assert f.evidence == {"covered": 8, "dataset_rows": 16, "per_rank": 4}


LOOP_UNDER_RANKS = """
from torch.utils.data import DataLoader, DistributedSampler

tokenized = raw.map(tokenize, batched=True)  # every rank
loader = DataLoader(tokenized, sampler=DistributedSampler(tokenized), batch_size=8)
for epoch in range(3):
    for batch in loader:
        train_step(batch)
predictions = accelerator.gather(logits.argmax(-1))  # keeps the padding
"""

LOOP_UNDER_RANKS_FIXED = """
from torch.utils.data import DataLoader, DistributedSampler

with accelerator.main_process_first():
    tokenized = raw.map(tokenize, batched=True)
loader = DataLoader(tokenized, sampler=DistributedSampler(tokenized), batch_size=8)
for epoch in range(3):
    loader.sampler.set_epoch(epoch)
    for batch in loader:
        train_step(batch)
predictions = accelerator.gather_for_metrics(logits.argmax(-1))
"""


def test_what_the_script_source_shows_under_ranks(tmp_path):
    script = write_script(tmp_path, LOOP_UNDER_RANKS)
    got = call("FTD952", rank_facts=rank_facts({}, {}), pipeline=_pipeline(script))
    assert got.codes == ["FTD952", "FTD953", "FTD961"]
    assert "never calls `set_epoch`" in got.one("FTD952").detail
    assert got.one("FTD953").location == str(Site(script, line_of(script, "# keeps the padding")))
    assert "gather_for_metrics" in got.one("FTD953").fix
    f = got.one("FTD961")
    assert f.detail.startswith("1 `.map(...)` calls run on every rank") and "main_process_first" in f.fix
    assert f.location == str(Site(script, line_of(script, "# every rank")))


def test_a_script_that_sets_the_epoch_gathers_for_metrics_and_maps_once(tmp_path):
    script = write_script(tmp_path, LOOP_UNDER_RANKS_FIXED)
    assert call("FTD952", rank_facts=rank_facts({}, {}), pipeline=_pipeline(script)).findings == []


def test_preprocessing_on_the_main_rank_first_by_its_rank(tmp_path):
    script = write_script(
        tmp_path,
        """
        if rank == 0:
            tokenized = raw.map(tokenize, batched=True)
        barrier()
        tokenized = raw.map(tokenize, batched=True)
        """,
    )
    assert "FTD961" not in call("FTD961", rank_facts=rank_facts({}, {}), pipeline=_pipeline(script)).codes


def test_an_unwrapped_model_with_different_weights_on_each_rank():
    facts = rank_facts({"param_checksum": "aaaa"}, {"param_checksum": "bbbb"}, wrapper="none", process_group=True)
    got = call("FTD954", rank_facts=facts, pipeline=_pipeline())
    assert got.codes == ["FTD954", "FTD955"]
    assert "Ranks 0, 1 hold different weights" in got.one("FTD954").detail
    assert "DistributedDataParallel(model)" in got.one("FTD955").fix
    assert got.one("FTD955").evidence == {"process_group": True}


def test_an_unwrapped_model_with_the_same_weights_still_never_averages_gradients():
    got = call("FTD955", rank_facts=rank_facts({}, {}, wrapper="none"), pipeline=_pipeline())
    assert got.codes == ["FTD955"]


def test_a_ddp_model_whose_two_steps_run_is_fine():
    assert call("FTD954", rank_facts=rank_facts({}, {}), pipeline=_pipeline()).findings == []


def _ddp_error(text, without_grad=()):
    return {
        "kwargs": {"find_unused_parameters": False},
        "grad_checksum": "aa11",
        "without_grad": list(without_grad),
        "error": text,
    }


def test_parameters_without_gradient_under_ddp():
    error = (
        "RuntimeError: Expected to have finished reduction in the prior iteration before starting a new one. "
        "This error indicates that your module has parameters that were not used in producing loss."
    )
    unused = ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    facts = rank_facts({}, {}, ddp=_ddp_error(error, unused))
    f = call("FTD956", rank_facts=facts, pipeline=_pipeline()).one("FTD956")
    assert "Two DDP steps on rank 0 fail: RuntimeError: Expected to have finished reduction" in f.detail
    assert (
        "2 trainable parameters get no gradient (e.g. bert.pooler.dense.bias, bert.pooler.dense.weight), with "
        "find_unused_parameters=False." in f.detail
    )
    assert "ddp_find_unused_parameters=True" in f.fix and f.evidence["without_grad"] == unused


def test_reentrant_checkpointing_under_ddp():
    error = (
        "RuntimeError: Expected to mark a variable ready only once. This error is caused by one of the "
        "following reasons: 1) Use of a module parameter outside the `forward` function."
    )
    facts = rank_facts({}, {}, ddp=_ddp_error(error))
    got = call("FTD957", rank_facts=facts, pipeline=_pipeline())
    assert got.codes == ["FTD957"] and '"use_reentrant": False' in got.one("FTD957").fix


def test_device_map_auto_on_every_rank():
    model = bert()
    p = _pipeline(model=model, call_kwargs={id(model): {"device_map": "auto"}})
    f = call("FTD959", rank_facts=rank_facts({}, {}), pipeline=p, model=model).one("FTD959")
    assert "runs in each of the 2 ranks" in f.detail and 'Drop `device_map="auto"`' in f.fix


def test_device_map_auto_in_a_single_process_is_fine():
    model = bert()
    p = _pipeline(model=model, call_kwargs={id(model): {"device_map": "auto"}})
    assert call("FTD959", rank_facts=rank_facts({}), pipeline=p, model=model).findings == []


def _frozen_encoder():
    model = bert()
    model.bert.requires_grad_(False)
    return model


def test_fsdp_over_frozen_and_trainable_parameters():
    model = _frozen_encoder()
    args = SimpleNamespace(fsdp="full_shard auto_wrap", fsdp_config={})
    got = call("FTD960", rank_facts=rank_facts({}, {}), pipeline=_pipeline(model=model), model=model, args=args)
    assert got.codes == ["FTD960"] and 'fsdp_config={"use_orig_params": True}' in got.one("FTD960").fix


def test_fsdp_with_use_orig_params_is_fine():
    model = _frozen_encoder()
    args = SimpleNamespace(fsdp="full_shard auto_wrap", fsdp_config={"use_orig_params": True})
    assert (
        call("FTD960", rank_facts=rank_facts({}, {}), pipeline=_pipeline(model=model), model=model, args=args).findings
        == []
    )
