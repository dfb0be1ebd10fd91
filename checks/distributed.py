"""distributed: with `--nproc N` the script runs on N ranks under torchrun; the ranks' facts are compared.

Each rank recorded, at the moment training starts, the samples it draws, its weights, what one synchronised step
gives, and where it stopped if it did (ftdoctor/targets/distributed.py). These checks judge that record.
"""

from __future__ import annotations

import ast
import re

from ftdoctor.sdk import Site, Skip, check, finding, read_source, rule

rule(
    "FTD950",
    "same-data-on-every-rank",
    "distributed",
    "error",
    "Every rank trains on the same data",
    """
     Under torchrun each rank runs the whole script. A DataLoader without a DistributedSampler (or not prepared
     by Accelerate) gives every rank the same batches: N GPUs do the work of one, and an epoch is N epochs.
     """,
    broken="loader = DataLoader(train, batch_size=8, shuffle=True)  # under torchrun",
    fixed="""
     sampler = DistributedSampler(train, shuffle=True)
     loader = DataLoader(train, batch_size=8, sampler=sampler)  # and sampler.set_epoch(epoch) every epoch
     """,
)
rule(
    "FTD951",
    "data-sharded-twice",
    "distributed",
    "error",
    "The data is split among the ranks twice",
    """
     A DataLoader that already shards by rank (DistributedSampler) and is then prepared by Accelerate (which
     shards again) gives each rank 1/N of its 1/N: together the ranks see only a fraction of each epoch.
     """,
    broken="""
     loader = DataLoader(train, sampler=DistributedSampler(train), batch_size=8)
     loader = accelerator.prepare(loader)
     """,
    fixed="""
     loader = DataLoader(train, shuffle=True, batch_size=8)
     loader = accelerator.prepare(loader)  # Accelerate shards it
     """,
)
rule(
    "FTD952",
    "sampler-epoch-never-set",
    "distributed",
    "warning",
    "DistributedSampler.set_epoch is never called",
    """
     A DistributedSampler shuffles with a seed plus its epoch. Without `sampler.set_epoch(epoch)` at the start of
     each epoch, every epoch visits the data in the same order.
     """,
    broken="for epoch in range(3):\n    for batch in loader:\n        ...",
    fixed="for epoch in range(3):\n    loader.sampler.set_epoch(epoch)\n    for batch in loader:\n        ...",
)
rule(
    "FTD953",
    "eval-gather-duplicates",
    "distributed",
    "warning",
    "Evaluation gathers padded duplicates",
    """
     To give every rank the same number of batches, the last evaluation batches are padded with repeated
     samples. `accelerator.gather` keeps those duplicates, so the metric is computed on more samples than the
     evaluation set has; `accelerator.gather_for_metrics` drops them.
     """,
    broken="predictions = accelerator.gather(logits.argmax(-1))",
    fixed="predictions = accelerator.gather_for_metrics(logits.argmax(-1))",
)
rule(
    "FTD954",
    "weights-differ-across-ranks",
    "distributed",
    "error",
    "The ranks start from different weights",
    """
     Without a wrapper that broadcasts rank 0's weights (DDP does when it wraps the model), weights initialised at
     random (a new head, an unseeded model) differ from rank to rank: each rank trains another model.
     """,
    broken="model = build_model()  # random init, different on every rank; never wrapped",
    fixed="model = DistributedDataParallel(build_model())  # or accelerator.prepare(model)",
)
rule(
    "FTD955",
    "gradients-not-synchronized",
    "distributed",
    "error",
    "Gradients are not averaged across ranks",
    """
     A loop under torchrun whose model is not wrapped (DistributedDataParallel, FSDP, or Accelerate's prepare)
     never averages gradients: every rank trains its own copy on its own data, and the copies drift apart.
     """,
    broken="model.to(device)  # under torchrun, never wrapped",
    fixed="model = DistributedDataParallel(model.to(device))  # or model = accelerator.prepare(model)",
)
rule(
    "FTD956",
    "ddp-unused-parameters",
    "distributed",
    "error",
    "Parameters get no gradient under DDP",
    """
     DDP waits for a gradient of every parameter before it averages them. When some take no part in the loss (an
     unused head, frozen-by-accident modules, LoRA setups), the second step fails with "Expected to have finished
     reduction in the prior iteration before starting a new one".
     """,
    broken='TrainingArguments("out", ddp_find_unused_parameters=False)  # some parameters are unused',
    fixed='TrainingArguments("out", ddp_find_unused_parameters=True)  # or freeze what the loss never uses',
)
rule(
    "FTD957",
    "reentrant-checkpointing-ddp",
    "distributed",
    "error",
    "Reentrant gradient checkpointing fails under DDP",
    """
     Reentrant activation checkpointing runs each layer's backward again, and DDP then sees a parameter marked
     ready twice ("Expected to mark a variable ready only once"). The non-reentrant form works with DDP.
     """,
    broken='TrainingArguments("out", gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True})',
    fixed='TrainingArguments("out", gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False})',
)
rule(
    "FTD958",
    "collective-on-one-rank",
    "distributed",
    "error",
    "A collective is entered by some ranks only",
    """
     Barriers, all-reduces, `accelerator.wait_for_everyone()` and saves that synchronise must be called by every
     rank. Called inside `if rank == 0:` they wait forever for the others: the job hangs without an error, often
     at the first save. ftdoctor gives each collective a short timeout and shows where each rank waited.
     """,
    broken="if accelerator.is_main_process:\n    accelerator.wait_for_everyone()\n    accelerator.save_model(model, out)",
    fixed="accelerator.wait_for_everyone()\nif accelerator.is_main_process:\n    accelerator.save_model(model, out)",
)
rule(
    "FTD959",
    "device-map-auto-multiprocess",
    "distributed",
    "error",
    'device_map="auto" in every rank',
    """
     `from_pretrained(..., device_map="auto")` spreads one copy of the model over every visible GPU. Under
     torchrun each rank does that: N processes fight over the same GPUs, and DDP cannot wrap a model split
     across devices.
     """,
    broken='model = AutoModelForCausalLM.from_pretrained(ckpt, device_map="auto")  # under torchrun',
    fixed="model = AutoModelForCausalLM.from_pretrained(ckpt)  # the Trainer/Accelerate places it per rank",
)
rule(
    "FTD960",
    "fsdp-mixed-requires-grad",
    "distributed",
    "error",
    "FSDP with frozen and trainable parameters mixed",
    """
     FSDP flattens each wrapped module's parameters into one tensor, which cannot mix `requires_grad=True` and
     `False` unless `use_orig_params=True`. Frozen bases with trainable adapters fail when FSDP wraps them.
     """,
    broken='TrainingArguments("out", fsdp="full_shard auto_wrap")  # LoRA: frozen base, trainable adapters',
    fixed='TrainingArguments("out", fsdp="full_shard auto_wrap", fsdp_config={"use_orig_params": True})',
)
rule(
    "FTD961",
    "preprocessing-on-every-rank",
    "distributed",
    "warning",
    "Every rank preprocesses the whole dataset",
    """
     Under torchrun each rank runs `dataset.map(...)` itself: N times the work, and N processes writing the same
     cache files. Run it on the main process first, the others then load its cache.
     """,
    broken="tokenized = raw.map(tokenize, batched=True)",
    fixed='with training_args.main_process_first(desc="tokenize"):\n    tokenized = raw.map(tokenize, batched=True)',
)

_COLLECTIVE_FAILURE = re.compile(
    r"Timed out waiting|timed out|Connection (?:closed|reset) by peer|"
    r"ProcessGroupGloo|gloo|Broken pipe",
    re.I,
)


def _facts(rank_facts):
    facts = [f for f in (rank_facts or []) if isinstance(f, dict)]
    if not facts:
        raise Skip("not run on several ranks (use --nproc N)")
    return facts


def _ranks(facts) -> str:
    return ", ".join(str(f.get("rank")) for f in facts)


@check("distributed", codes=("FTD958",))
def collectives_on_every_rank(rank_facts):
    facts = _facts(rank_facts)
    world = max(int(f.get("world_size") or 1) for f in facts)
    stuck = [f for f in facts if f.get("outcome") == "error" and _COLLECTIVE_FAILURE.search(f.get("exception") or "")]
    missing = sorted(set(range(world)) - {int(f.get("rank", -1)) for f in facts})
    if not stuck and not missing:
        return None
    places = [f"rank {f['rank']} waited at {f.get('site') or 'a library call'}" for f in stuck]
    places += [f"rank {r} never reported (it may still be waiting)" for r in missing]
    started = [f for f in facts if f.get("outcome") in ("training", "loop")]
    if started:
        places += [f"rank {f['rank']} reached training" for f in started]
    location = next((f.get("site") for f in stuck if f.get("site")), None)
    return finding(
        "FTD958",
        "The ranks did not meet in the same collective: " + "; ".join(places) + ".",
        "Call every collective (barrier, all_reduce, `accelerator.wait_for_everyone()`, "
        "`save_state`) on every rank, outside `if rank == 0:` / `if accelerator.is_main_process:`; "
        "only the file writing itself belongs under that condition.",
        location=location,
        evidence={
            "ranks": [{k: f.get(k) for k in ("rank", "outcome", "site", "exception")} for f in facts],
            "missing": missing,
        },
    )


@check("distributed", codes=("FTD950", "FTD951"))
def every_rank_its_own_data(rank_facts, pipeline):
    facts = [f for f in _facts(rank_facts) if f.get("outcome") in ("training", "loop")]
    if len(facts) < 2:
        raise Skip("fewer than two ranks reached training")
    world = len(facts)
    keys = [set(f.get("sample_keys") or []) for f in facts]
    out = []
    epochs = [f.get("epoch_indices") for f in facts]
    drawn = min((len(f.get("sample_keys") or []) for f in facts), default=0)
    if drawn and all(isinstance(e, list) and len(e) >= drawn for e in epochs):
        # Which rows a rank drew is known by their indices: equal contents at other indices (a dataset with
        # repeated rows) are other rows.
        same = all(e[:drawn] == epochs[0][:drawn] for e in epochs[1:])
    else:
        same = all(keys) and all(k == keys[0] for k in keys[1:])
    if same:
        out.append(
            finding(
                "FTD950",
                f"Ranks {_ranks(facts)} drew the same {len(keys[0])} rows in their first "
                "batches: every rank trains on the same data.",
                _same_data_fix(facts[0]),
                location=pipeline.location(_loader(pipeline)),
                evidence={"rows_compared": len(keys[0]), "sampler": facts[0].get("sampler")},
            )
        )
        return out
    n = facts[0].get("dataset_len")
    if n and all(isinstance(e, list) for e in epochs):
        union = set().union(*map(set, epochs))
        if len(union) <= 0.75 * n:
            out.append(
                finding(
                    "FTD951",
                    f"Together the {world} ranks draw {len(union)} of the {n} rows in an epoch "
                    f"(each {len(epochs[0])}): the data is sharded twice, once by the sampler and once "
                    "more on top of it.",
                    "Shard once: give Accelerate a plain DataLoader (`shuffle=True`, no "
                    "DistributedSampler) and let `accelerator.prepare` split it, or keep the "
                    "DistributedSampler and do not prepare the loader.",
                    location=pipeline.location(_loader(pipeline)),
                    evidence={"covered": len(union), "dataset_rows": n, "per_rank": len(epochs[0])},
                )
            )
    return out


def _loader(pipeline):
    rec = pipeline.extra.get("loop")
    return getattr(rec, "dataloader", None)


def _same_data_fix(facts) -> str:
    if facts.get("wrapper") in ("ddp", "fsdp", "deepspeed") or facts.get("sampler") != "DistributedSampler":
        return (
            "Give each rank its own share: `DataLoader(train, sampler=DistributedSampler(train), ...)` with "
            "`sampler.set_epoch(epoch)` every epoch, or prepare the loader with Accelerate "
            "(`loader = accelerator.prepare(loader)`)."
        )
    return "Check the sampler: each rank must draw other rows."


@check("distributed", codes=("FTD952", "FTD953", "FTD961"))
def loop_source_under_ranks(rank_facts, pipeline):
    """What the script's source shows about running on several ranks."""
    facts = _facts(rank_facts)
    cap = pipeline.capture
    if cap is None:
        return None
    try:
        source = read_source(cap.script)
        tree = ast.parse(source)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None

    out = []
    if any(f.get("sampler") == "DistributedSampler" for f in facts) and ".set_epoch(" not in source:
        out.append(
            finding(
                "FTD952",
                "The loop draws from a DistributedSampler but never calls `set_epoch`: every "
                "epoch repeats the first one's order.",
                "Call `sampler.set_epoch(epoch)` (or `loader.sampler.set_epoch(epoch)`) at the start of every epoch.",
                location=pipeline.location(_loader(pipeline)),
            )
        )
    gathers = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "gather"
    ]
    if gathers and "gather_for_metrics" not in source:
        out.append(
            finding(
                "FTD953",
                "The evaluation gathers predictions with `.gather(...)`, which keeps the "
                "samples repeated to pad the last batches: the metric counts more samples than the "
                "evaluation set has.",
                "Use `accelerator.gather_for_metrics(...)`: it drops the padding.",
                location=str(Site(cap.script, gathers[0].lineno)),
            )
        )
    maps = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "map" and _is_dataset_map(n)
    ]
    # The main process preprocesses first: under `main_process_first()`, or in an `if` on the rank (the others
    # then load its cache after a barrier).
    guards = [
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.With, ast.AsyncWith))
        and any("main_process_first" in ast.unparse(i.context_expr) for i in n.items)
    ]
    guards += [
        n for n in ast.walk(tree) if isinstance(n, ast.If) and re.search(r"rank|main_process", ast.unparse(n.test))
    ]
    inside = {id(m) for w in guards for m in ast.walk(w)}
    bare = [m for m in maps if id(m) not in inside] if not any(id(m) in inside for m in maps) else []
    if bare:
        out.append(
            finding(
                "FTD961",
                f"{len(bare)} `.map(...)` calls run on every rank: each rank preprocesses the "
                "whole dataset and writes the same cache.",
                'Wrap the preprocessing in `with training_args.main_process_first(desc="tokenize"):` '
                "(or `with accelerator.main_process_first():`).",
                location=str(Site(cap.script, bare[0].lineno)),
            )
        )
    return out


def _is_dataset_map(call) -> bool:
    """`x.map(fn, batched=...)`, not `map(...)` of Python or of a pandas object: a function and keywords that
    datasets' map takes."""
    names = {k.arg for k in call.keywords}
    return bool(names & {"batched", "remove_columns", "num_proc", "fn_kwargs", "desc", "load_from_cache_file"})


@check("distributed", codes=("FTD954", "FTD955", "FTD956", "FTD957"))
def one_model_in_step(rank_facts, pipeline):
    facts = [f for f in _facts(rank_facts) if f.get("outcome") in ("training", "loop")]
    if len(facts) < 2:
        raise Skip("fewer than two ranks reached training")
    out = []
    wrapper = facts[0].get("wrapper")
    loc = pipeline.location(pipeline.model)
    if wrapper == "none":
        checksums = {f.get("param_checksum") for f in facts}
        if len(checksums) > 1:
            out.append(
                finding(
                    "FTD954",
                    f"Ranks {_ranks(facts)} hold different weights when training starts, and "
                    "nothing broadcasts rank 0's: each rank trains another model.",
                    "Wrap the model (`DistributedDataParallel(model)` or `accelerator.prepare(model)`): "
                    "both start every rank from rank 0's weights.",
                    location=loc,
                )
            )
        out.append(
            finding(
                "FTD955",
                f"The model trained on ranks {_ranks(facts)} is not wrapped for distributed "
                "training: its gradients are never averaged, so every rank trains its own copy.",
                "Wrap it before the loop: `model = DistributedDataParallel(model)` after "
                '`torch.distributed.init_process_group("gloo"/"nccl")`, or `model, optimizer, loader '
                "= accelerator.prepare(model, optimizer, loader)`.",
                location=loc,
                evidence={"process_group": facts[0].get("process_group")},
            )
        )
        return out
    trials = [f.get("ddp") or {} for f in facts]
    errors = [(f["rank"], t.get("error")) for f, t in zip(facts, trials) if t.get("error")]
    if errors:
        rank, text = errors[0]
        unused = sorted(set().union(*[set(t.get("without_grad") or []) for t in trials]))
        if "mark a variable ready only once" in text or "marked ready twice" in text or "ready twice" in text:
            out.append(
                finding(
                    "FTD957",
                    f"Two DDP steps on rank {rank} fail: {text.splitlines()[0][:300]}",
                    'Use non-reentrant checkpointing: `gradient_checkpointing_kwargs={"use_reentrant": '
                    "False}` (or `model.gradient_checkpointing_enable(gradient_checkpointing_kwargs="
                    '{"use_reentrant": False})`).',
                    location=pipeline.location(pipeline.args, pipeline.model),
                    evidence={"error": text[:1000]},
                )
            )
        elif "finished reduction" in text or unused:
            kwargs = trials[0].get("kwargs") or {}
            out.append(
                finding(
                    "FTD956",
                    f"Two DDP steps on rank {rank} fail: {text.splitlines()[0][:300]} "
                    f"{len(unused)} trainable parameters get no gradient (e.g. "
                    f"{', '.join(unused[:3]) or 'unknown'}), with find_unused_parameters="
                    f"{kwargs.get('find_unused_parameters', False)}.",
                    "Freeze what the loss never uses (`p.requires_grad = False`), or let DDP look for "
                    "unused parameters: `TrainingArguments(..., ddp_find_unused_parameters=True)` "
                    "(Accelerate: `DistributedDataParallelKwargs(find_unused_parameters=True)`).",
                    location=pipeline.location(pipeline.args, pipeline.model),
                    evidence={"without_grad": unused[:50], "error": text[:1000]},
                )
            )
    return out


@check("distributed", codes=("FTD959", "FTD960"))
def placement_fits_ranks(rank_facts, pipeline, model, args=None):
    facts = _facts(rank_facts)
    world = max(int(f.get("world_size") or 1) for f in facts)
    out = []
    cap = pipeline.capture
    kwargs = cap.call_kwargs.get(id(model), {}) if cap is not None else {}
    if world > 1 and kwargs.get("device_map") == "auto":
        out.append(
            finding(
                "FTD959",
                f'`from_pretrained(..., device_map="auto")` runs in each of the {world} ranks: '
                "every rank spreads its copy over all visible GPUs.",
                'Drop `device_map="auto"` under torchrun (the Trainer or Accelerate places the model on '
                "each rank's GPU); keep it only for a single process splitting a model too large for "
                "one GPU.",
                location=pipeline.location(model),
            )
        )
    if getattr(args, "fsdp", None):
        grads = {p.requires_grad for p in model.parameters()}
        use_orig = (getattr(args, "fsdp_config", None) or {}).get("use_orig_params")
        if grads == {True, False} and not use_orig:
            out.append(
                finding(
                    "FTD960",
                    "FSDP is on and the model mixes frozen and trainable parameters: FSDP "
                    "cannot flatten them together.",
                    'Add `fsdp_config={"use_orig_params": True}` to TrainingArguments.',
                    location=pipeline.location(args),
                )
            )
    return out
