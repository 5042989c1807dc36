"""A small character-level GPT trained on the shipped English sample: the ``run gpt`` model.

Built to run on a laptop CPU in seconds (2 blocks, 64-dim embeddings, 64-token context), so that
``veriscope run gpt`` exercises the gate with the canonical preset. Pathologies can be injected
from an onset iteration for calibration runs:

* ``data_permutation``: a fixed random permutation of the vocabulary is applied to the inputs
  (and targets) — the data distribution changes abruptly;
* ``lr_spike``: the learning rate is multiplied by ``spike_factor``;
* ``collapse``: the last block's output is projected onto a rank-2 subspace (representation
  collapse).

torch is imported lazily by the functions that need it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Literal

import attrs

__all__ = ["PATHOLOGIES", "GPTConfig", "Pathology", "TrainOutcome", "load_corpus", "train_gpt"]

Pathology = Literal["none", "data_permutation", "lr_spike", "collapse"]
PATHOLOGIES: tuple[str, ...] = ("none", "data_permutation", "lr_spike", "collapse")


@attrs.frozen
class GPTConfig:
    """Model and training knobs of the built-in GPT runner."""

    max_iters: int = 2000
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 8
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    lr: float = 3e-3
    pathology: Pathology = "none"
    onset: int | None = None
    spike_factor: float = 30.0
    threads: int | None = None


@attrs.frozen
class TrainOutcome:
    iters_done: int
    final_loss: float | None
    wall_s: float
    interrupted: bool
    stopped_on_fail: bool


def load_corpus() -> str:
    """The shipped English sample text of invarlock-core."""
    return resources.files("invarlock_core").joinpath("data", "sample_en.txt").read_text("utf-8")


def _build_model(torch: Any, vocab: int, cfg: GPTConfig) -> Any:
    nn = torch.nn

    class Block(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.n_embd)
            self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
            self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
            self.ln2 = nn.LayerNorm(cfg.n_embd)
            self.mlp = nn.Sequential(
                nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd)
            )

        def forward(self, x: Any) -> Any:
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            shape = (b, t, cfg.n_head, c // cfg.n_head)
            q, k, v = (u.view(shape).transpose(1, 2) for u in (q, k, v))
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, c))
            return x + self.mlp(self.ln2(x))

    class TinyGPT(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab, cfg.n_embd)
            self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.n_layer)])
            self.ln_f = nn.LayerNorm(cfg.n_embd)
            self.head = nn.Linear(cfg.n_embd, vocab, bias=False)

        def forward(self, idx: Any) -> Any:
            t = idx.shape[1]
            x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    return TinyGPT()


def train_gpt(
    cfg: GPTConfig,
    *,
    on_probe: Callable[[int, dict[str, float], float], None] | None = None,
    on_gate: Callable[[int], bool] | None = None,
    metric_interval: int = 5,
    gate_window: int = 100,
    make_probe: Callable[[Any, int, str], Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    log_interval: int = 100,
) -> TrainOutcome:
    """Train the tiny GPT for ``cfg.max_iters`` iterations.

    ``make_probe(block, hidden_size, device)`` returns a :class:`~veriscope_gate.probe.LayerProbe`
    on the last block (``None``: no gating). Every ``metric_interval`` iterations the probe is
    armed and ``on_probe(iter, values, loss)`` receives the metric values; every ``gate_window``
    iterations ``on_gate(iter)`` runs and returns True to stop training (stop on FAIL).
    ``should_stop()`` is polled once per iteration (signal handling).
    """
    from invarlock_core.optional_deps import require

    torch = require("torch", purpose="veriscope run gpt")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif cfg.device == "cpu":
        torch.set_num_threads(1)  # tiny matrices: one thread beats contended many
    torch.manual_seed(cfg.seed)
    text = load_corpus()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    vocab = len(chars)
    device = torch.device(cfg.device)
    model = _build_model(torch, vocab, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    offsets = torch.arange(cfg.block_size)
    perm = torch.randperm(vocab, generator=torch.Generator().manual_seed(cfg.seed + 1))
    last = model.blocks[-1]
    probe = make_probe(last, cfg.n_embd, str(device)) if make_probe is not None else None
    collapse_handle = None
    onset = cfg.onset if cfg.onset is not None else cfg.max_iters + 1
    loss_value: float | None = None
    t0 = time.perf_counter()
    done = 0
    interrupted = False
    stopped = False
    model.train()
    for it in range(1, cfg.max_iters + 1):
        if should_stop is not None and should_stop():
            interrupted = True
            break
        active = cfg.pathology != "none" and it >= onset
        ix = torch.randint(0, data.numel() - cfg.block_size - 1, (cfg.batch_size,), generator=gen)
        x = data[ix[:, None] + offsets]
        y = data[ix[:, None] + offsets + 1]
        if active and cfg.pathology == "data_permutation":
            x, y = perm[x], perm[y]
        if active and cfg.pathology == "collapse" and collapse_handle is None:
            basis = torch.linalg.qr(torch.randn(cfg.n_embd, 2, generator=gen))[0].to(device)

            def _collapse(_m: Any, _i: Any, out: Any, basis: Any = basis) -> Any:
                return (out @ basis) @ basis.T

            collapse_handle = last.register_forward_hook(_collapse)
            if probe is not None:  # the probe must see the collapsed output: re-hook after it
                probe.remove()
                probe = make_probe(last, cfg.n_embd, str(device)) if make_probe else None
        lr = cfg.lr * (cfg.spike_factor if active and cfg.pathology == "lr_spike" else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        probing = probe is not None and it % metric_interval == 0
        if probing and probe is not None:
            probe.arm()
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = it
        if probing and probe is not None:
            packed = probe.packed()
            if packed is not None:
                both = torch.cat([packed, loss.detach().reshape(1)])
                host = both.cpu().numpy()  # the one host sync of a probe step
                loss_value = float(host[-1])
                values = probe.collect(host[:-1])
                if on_probe is not None:
                    on_probe(it, values, loss_value)
        if on_gate is not None and it % gate_window == 0 and on_gate(it):
            stopped = True
            break
        if log is not None and it % log_interval == 0:
            loss_value = float(loss.item())
            log(f"iter {it} loss {loss_value:.4f}")
    if loss_value is None or not math.isfinite(loss_value):
        loss_value = None
    return TrainOutcome(iters_done=done, final_loss=loss_value, wall_s=time.perf_counter() - t0,
                        interrupted=interrupted, stopped_on_fail=stopped)
