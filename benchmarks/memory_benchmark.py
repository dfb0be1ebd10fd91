"""ftdoctor's memory model against real training steps on a GPU, and against batch-size finders.

For a BERT-base-sized classifier and a GPT-2-sized causal LM (random init from configs, synthetic tokens, no
network) at two sequence lengths: ftdoctor's predicted peak at the configured batch and its largest batch, against
torch.cuda.max_memory_allocated and the true largest batch (bisection with real steps), and the batch sizes that
accelerate's find_executable_batch_size and Lightning's BatchSizeFinder find (trials and seconds each).
Targets (issue 6): predicted peak within 10% of measured, largest batch within 10% of the true one, at most 3
trial steps.

    python benchmarks/memory_benchmark.py                 # on a GPU machine
    python benchmarks/memory_benchmark.py --cpu-smoke     # tiny models, CPU only: exercises every code path
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:  # the installed package (ftdoctor.checks exists only once installed, editable or not)
    import ftdoctor.checks  # noqa: F401
except ImportError:
    sys.exit("install ftdoctor first: pip install -e .  (or pip install --no-deps --target DIR . and PYTHONPATH=DIR)")


def build(kind, smoke):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if kind == "bert":
        cfg = dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            vocab_size=30522,
            max_position_embeddings=512,
            num_labels=3,
        )
        if smoke:
            cfg.update(
                hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=1000
            )
        return BertForSequenceClassification(BertConfig(**cfg))
    cfg = dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024, bos_token_id=0, eos_token_id=0)
    if smoke:
        cfg.update(n_embd=64, n_layer=2, n_head=2, vocab_size=1000)
    return GPT2LMHeadModel(GPT2Config(**cfg))


def make_collator(kind):
    import torch

    def collate(rows):
        ids = torch.tensor([r["input_ids"] for r in rows])
        out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        out["labels"] = ids.clone() if kind == "gpt2" else torch.tensor([r["labels"] for r in rows])
        return out

    return collate


def synthetic_row(kind, seq_len, vocab):
    import random

    rng = random.Random(seq_len)
    return {"input_ids": [rng.randrange(1, vocab) for _ in range(seq_len)], "labels": rng.randrange(3)}


def predict(model, kind, seq_len, batch, device_bytes, optimizer):
    """ftdoctor's model of one Trainer step, as the memory stage builds it."""
    from ftdoctor.runtime import devices as gpu
    from ftdoctor.runtime.memory_model import StepModel, fit_activations, head_grad_bytes, unique_params
    from ftdoctor.targets import work_copy as copy_model
    from ftdoctor.targets.base import model_loss

    t0 = time.perf_counter()
    params = unique_params(model)
    p = sum(x.numel() * x.element_size() for x in params)
    opt = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values() if hasattr(v, "numel"))
    row = synthetic_row(kind, seq_len, model.config.vocab_size)
    fit = fit_activations(copy_model(model), row, make_collator(kind), model_loss)
    step = StepModel(p, p, opt, head_grad_bytes(model), fit, seq_len, 1)
    device = gpu.Device(0, "bench", device_bytes)
    out = {
        "peak": step.peak(batch),
        "max_capacity": step.max_batch(device.plannable_bytes),
        "max_margin": step.max_batch(device.plannable_bytes * 0.9),
        "seconds": time.perf_counter() - t0,
    }
    return out, step


def real_step_peak(model, optimizer, kind, seq_len, b, device):
    """Peak bytes of two training steps at batch b (None on out-of-memory)."""
    import torch

    from ftdoctor.runtime.trials import _one_trial

    batch = make_collator(kind)([synthetic_row(kind, seq_len, model.config.vocab_size)] * b)
    trial = _one_trial(model, optimizer, b, batch, device, None, 2)
    if device != "cpu":
        torch.cuda.empty_cache()
    if not trial.ok and not trial.oom:
        raise RuntimeError(trial.error)
    return trial.peak_bytes if trial.ok else None, trial.ok


def true_max(model, optimizer, kind, seq_len, device, guess, limit):
    """The largest batch that runs, by exponential search from a guess and bisection; returns (b, trials, s)."""
    t0, trials = time.perf_counter(), 0

    def ok(b):
        nonlocal trials
        trials += 1
        return real_step_peak(model, optimizer, kind, seq_len, b, device)[1]

    lo, hi = 0, None
    b = max(1, guess)
    while hi is None:
        if b > limit:
            return limit, trials, time.perf_counter() - t0
        if ok(b):
            lo, b = b, b * 2
        else:
            hi = b
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, trials, time.perf_counter() - t0


def accelerate_finder(model, optimizer, kind, seq_len, device, start):
    try:
        from accelerate.utils import find_executable_batch_size
    except ImportError:
        return None
    t0, trials = time.perf_counter(), 0

    @find_executable_batch_size(starting_batch_size=start)
    def run(batch_size):
        nonlocal trials
        trials += 1
        _peak, ok = real_step_peak(model, optimizer, kind, seq_len, batch_size, device)
        if not ok:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. (trial step)")
        return batch_size

    return run(), trials, time.perf_counter() - t0


def lightning_finder(model, kind, seq_len, device, start):
    try:
        import lightning.pytorch as pl
        from lightning.pytorch.tuner import Tuner
    except ImportError:
        try:
            import pytorch_lightning as pl
            from pytorch_lightning.tuner import Tuner
        except ImportError:
            return None
    import torch

    collate = make_collator(kind)
    row = synthetic_row(kind, seq_len, model.config.vocab_size)

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.batch_size, self.trials = model, start, 0

        def train_dataloader(self):
            self.trials += 1
            return torch.utils.data.DataLoader(
                [row] * (self.batch_size * 3), batch_size=self.batch_size, collate_fn=collate
            )

        def training_step(self, batch, _):
            return self.model(**batch).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.model.parameters(), lr=1e-5)

    module = Module()
    trainer = pl.Trainer(
        accelerator="gpu" if device != "cpu" else "cpu",
        devices=1,
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    t0 = time.perf_counter()
    found = Tuner(trainer).scale_batch_size(module, mode="binsearch", steps_per_trial=2, init_val=start, max_trials=25)
    return found, module.trials, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU (slow paths, no targets)")
    ap.add_argument("--seq-lens", type=int, nargs="+", default=None)
    ap.add_argument("--models", nargs="+", default=["bert", "gpt2"])
    ap.add_argument("--batch", type=int, default=8, help="the configured per-device batch")
    ap.add_argument("--no-finders", action="store_true", help="skip accelerate's and Lightning's finders")
    ap.add_argument(
        "--gpu-memory",
        default=None,
        help="plan for this device size instead of the real one (the CPU smoke test uses 64MiB)",
    )
    opts = ap.parse_args()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    import torch

    from ftdoctor.entry.cli import _parse_size
    from ftdoctor.runtime import devices as gpu

    smoke = opts.cpu_smoke
    device = "cpu" if smoke else "cuda"
    seq_lens = opts.seq_lens or ([16, 32] if smoke else [128, 512])
    if smoke:
        device_bytes = _parse_size(opts.gpu_memory or "64MiB")
    else:
        if not torch.cuda.is_available():
            sys.exit("no GPU: run with --cpu-smoke")
        inv = gpu.plan_device(_parse_size(opts.gpu_memory) if opts.gpu_memory else None)
        # What the caching allocator can hand out: total less the CUDA context and other processes.
        free, total = torch.cuda.mem_get_info()
        device_bytes = inv.total_bytes if opts.gpu_memory else free
        print(
            f"device: {torch.cuda.get_device_name()} total {total / 2**30:.1f} GiB, free {free / 2**30:.1f} GiB; "
            f"torch {torch.__version__}"
        )
    rows = []
    for kind in opts.models:
        for s in seq_lens:
            model = build(kind, smoke)
            opt = torch.optim.AdamW(list(model.parameters()), lr=1e-5, fused=not smoke)
            # One CPU step so the optimizer state exists, as the backward stage measures it.
            batch = make_collator(kind)([synthetic_row(kind, 4, model.config.vocab_size)])
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            pred, _step = predict(model, kind, s, opts.batch, device_bytes, opt)
            model.to(device)
            if not smoke:
                # The optimizer state must live with the parameters.
                for st in opt.state.values():
                    for k, v in st.items():
                        if torch.is_tensor(v) and k != "step":
                            st[k] = v.to(device)
                    if "step" in st:
                        st["step"] = st["step"].to(device)
            measured, _ = real_step_peak(model, opt, kind, s, opts.batch, device)
            if smoke:
                measured = None  # no allocator statistics on the CPU
            # ftdoctor's own probe: 2 trial steps (predicted maximum with margin, and one above capacity).
            cap = pred["max_capacity"]
            probe = []
            for b in sorted({pred["max_margin"], cap + 1}):
                if b >= 1:
                    peak, ok = (
                        real_step_peak(model, opt, kind, s, b, device) if not smoke or b <= 4096 else (None, True)
                    )
                    probe.append((b, ok, peak))
            limit = 4096 if not smoke else 64
            tmax, t_trials, t_sec = (
                true_max(model, opt, kind, s, device, max(1, cap), limit) if not smoke else (None, 0, 0.0)
            )
            acc = lightning = None
            if not opts.no_finders:
                start = 2 ** max(1, math.ceil(math.log2(max(cap, 2) * 1.5))) if not smoke else 8
                try:
                    acc = accelerate_finder(model, opt, kind, s, device, start)
                except Exception as exc:
                    acc = (f"error: {type(exc).__name__}: {str(exc)[:60]}", 0, 0.0)
                try:
                    lightning = lightning_finder(model, kind, s, device, 2)
                except Exception as exc:
                    lightning = (f"error: {type(exc).__name__}: {str(exc)[:60]}", 0, 0.0)
            rows.append((kind, s, pred, measured, probe, (tmax, t_trials, t_sec), acc, lightning))
            print(
                f"done {kind} S={s}: predicted {pred['peak']} measured {measured} max {pred['max_capacity']} "
                f"true {tmax} probe {probe} accelerate {acc} lightning {lightning}",
                flush=True,
            )
            model.to("cpu")
            del model, opt
            if not smoke:
                torch.cuda.empty_cache()
    _print(rows, opts.batch, smoke)


def _print(rows, batch, smoke):
    gib = 2**30
    print(f"\nconfigured batch {batch}; peaks in GiB; max batch without margin (with 10% margin)")
    print(
        f"{'model':<6}{'S':>5} {'pred peak':>10} {'meas peak':>10} {'ratio':>6} {'pred max':>12} {'true max':>9} "
        f"{'ratio':>6} {'ftd trials':>11} {'ftd s':>6} {'bisect (trials, s)':>19} {'accelerate (b, trials, s)':>26} "
        f"{'lightning (b, trials, s)':>25}"
    )
    for kind, s, pred, measured, probe, (tmax, tt, ts), acc, lit in rows:
        ratio = f"{pred['peak'] / measured:.3f}" if measured else "-"
        mratio = f"{pred['max_capacity'] / tmax:.3f}" if tmax else "-"

        def fmt(r):
            if r is None:
                return "not installed"
            return f"{r[0]}, {r[1]}, {r[2]:.1f}s"

        probe_txt = f"{len(probe)} " + "/".join(f"{b}:{'ok' if ok else 'oom'}" for b, ok, _ in probe)
        print(
            f"{kind:<6}{s:>5} {pred['peak'] / gib:>10.3f} {(measured or 0) / gib:>10.3f} {ratio:>6} "
            f"{pred['max_capacity']:>5} ({pred['max_margin']:>4}) {tmax if tmax is not None else '-':>9} {mratio:>6} "
            f"{probe_txt:>11} {pred['seconds']:>6.2f} {f'{tt}, {ts:.1f}s':>19} {fmt(acc):>26} {fmt(lit):>25}"
        )
    if smoke:
        print("(--cpu-smoke: no allocator statistics or true maximum on the CPU; the table shows the code paths run)")


if __name__ == "__main__":
    main()
