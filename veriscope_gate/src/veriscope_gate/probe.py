"""The activation probe: a fixed JL sketch of one layer's hidden states, computed on-device.

:class:`LayerProbe` registers a forward hook on a module. The hook does nothing unless the probe
was *armed* for the current step (every ``metric_interval`` steps), so ordinary steps pay one
Python attribute check and no host synchronisation. On an armed step the hook

1. takes at most ``max_tokens`` token rows of the output (a fixed stride, no randomness),
2. updates a running EMA of each hidden unit's mean and variance and standardises with it,
3. projects with a fixed Gaussian matrix ``P`` (``hidden × d``, seed fixed, scaled by 1/√d),
4. computes the covariance eigenvalues of the projection and ``|cos|`` of fixed token pairs,

all as tensors on the training device. :meth:`LayerProbe.collect` moves that small packed tensor
(``d + pairs`` floats) to the host once, builds a :class:`~veriscope_gate.metrics.Sketch` and
evaluates the metrics. torch is imported lazily: ``import veriscope_gate`` never needs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from veriscope_gate.metrics import Metric, Sketch

if TYPE_CHECKING:
    import torch

__all__ = ["LayerProbe", "SketchProjector", "output_tensor"]


def _torch() -> Any:
    from invarlock_core.optional_deps import require

    return require("torch", purpose="the Veriscope activation probe")


def output_tensor(output: Any) -> Any:
    """The hidden-state tensor of a module output (tensor, tuple, or ModelOutput); else None."""
    torch = _torch()
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, list | tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    return None


class SketchProjector:
    """Running standardisation + fixed Gaussian projection + eigen/cos statistics, on-device."""

    def __init__(self, hidden_size: int, *, dim: int = 64, max_tokens: int = 1024,
                 pairs: int = 256, seed: int = 0, ema: float = 0.95,
                 device: Any = "cpu") -> None:
        torch = _torch()
        gen = torch.Generator(device="cpu").manual_seed(seed)
        self.dim = dim
        self.max_tokens = max_tokens
        self.pairs = pairs
        self.ema = ema
        self.hidden_size = hidden_size
        self.projection = (torch.randn(hidden_size, dim, generator=gen) / math.sqrt(dim)).to(device)
        idx = torch.randint(0, max_tokens, (2, pairs), generator=gen)
        self._pair_seed = idx.to(device)
        self.mean: Any = None
        self.var: Any = None
        self._per_n: dict[int, tuple[Any, Any]] = {}

    def __call__(self, hidden: Any) -> Any:
        """Packed ``[eigenvalues (desc, d), |cos| of pairs, token count]`` for one activation."""
        torch = _torch()
        with torch.no_grad():
            x = hidden.detach().reshape(-1, hidden.shape[-1]).float()
            n = x.shape[0]
            if n > self.max_tokens:
                stride = n // self.max_tokens
                x = x[: stride * self.max_tokens : stride]
                n = x.shape[0]
            if self.projection.device != x.device:
                self.projection = self.projection.to(x.device)
                self._pair_seed = self._pair_seed.to(x.device)
                self._per_n.clear()
            # Column moments as plain reductions: torch.var_mean over dim 0 of a row-major matrix
            # is a strided kernel about 10x slower on CPU than these two passes.
            mu = x.mean(dim=0)
            var = (x - mu).square().mean(dim=0)
            if self.mean is None or self.var is None:
                self.mean, self.var = mu, var
            else:
                self.mean = torch.lerp(self.mean, mu, 1 - self.ema)
                self.var = torch.lerp(self.var, var, 1 - self.ema)
            # Standardise inside the projection: (x - m) @ (P / s) instead of a scaled copy of x.
            z = (x - self.mean) @ (self.projection * torch.rsqrt(self.var + 1e-6)[:, None])
            zc = z - z.mean(dim=0, keepdim=True)
            eig = torch.linalg.eigvalsh(zc.T @ zc).flip(0) / max(1, n - 1)
            pairs, count = self._pairs(n, z.device)
            unit = torch.nn.functional.normalize(z[pairs], dim=1, eps=1e-8)
            cos = (unit[: self.pairs] * unit[self.pairs :]).sum(dim=1).abs()
            return torch.cat([eig, cos, count])

    def _pairs(self, n: int, device: Any) -> tuple[Any, Any]:
        """The fixed token pairs ``(a, b)`` (``a != b``) for ``n`` tokens, stacked as one index,
        and the token count as a tensor; cached per ``n`` (batches rarely change size)."""
        cached = self._per_n.get(n)
        if cached is None:
            torch = _torch()
            a = self._pair_seed[0] % n
            b = (a + 1 + self._pair_seed[1] % max(1, n - 1)) % n
            cached = (torch.cat([a, b]), torch.tensor([float(n)], device=device))
            self._per_n[n] = cached
        return cached

    def unpack(self, packed: Sequence[float] | np.ndarray[Any, Any]) -> Sketch:
        arr = np.asarray(packed, dtype=np.float64)
        return Sketch(
            eigenvalues=arr[: self.dim],
            pair_abs_cos=arr[self.dim : self.dim + self.pairs],
            dim=self.dim,
            tokens=int(arr[-1]),
        )


class LayerProbe:
    """A forward hook on one module that sketches its output on armed steps only."""

    def __init__(self, module: Any, metrics: Sequence[Metric], *, hidden_size: int,
                 dim: int = 64, max_tokens: int = 1024, seed: int = 0, device: Any = "cpu") -> None:
        self.metrics = list(metrics)
        self.projector = SketchProjector(hidden_size, dim=dim, max_tokens=max_tokens,
                                         seed=seed, device=device)
        self.armed = False
        self.elapsed_s = 0.0
        """Wall time spent sketching and collecting (the probe's share of the gate overhead)."""
        self.sketch_s = 0.0
        """The part of :attr:`elapsed_s` spent inside the forward hook (never reset)."""
        self._packed: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module: Any, _inputs: Any, output: Any) -> None:
        if not self.armed or self._packed is not None:
            return
        t = time.perf_counter()
        hidden = output_tensor(output)
        if hidden is not None:
            self._packed = self.projector(hidden)
        spent = time.perf_counter() - t
        self.elapsed_s += spent
        self.sketch_s += spent

    def arm(self) -> None:
        """Sketch the next forward pass of the module."""
        self.armed = True
        self._packed = None

    def packed(self) -> torch.Tensor | None:
        """The packed on-device statistics of the armed step (``None`` if nothing ran)."""
        return self._packed

    def collect(self, packed: Any = None) -> dict[str, float]:
        """Move the armed step's statistics to the host (one sync) and evaluate every metric."""
        t = time.perf_counter()
        source = packed if packed is not None else self._packed
        self.armed = False
        self._packed = None
        if source is None:
            return {}
        host = source.detach().cpu().numpy() if hasattr(source, "detach") else np.asarray(source)
        sketch = self.projector.unpack(host)
        values = {m.name: float(m.compute(sketch)) for m in self.metrics}
        self.elapsed_s += time.perf_counter() - t
        return values

    def remove(self) -> None:
        self._handle.remove()
