"""Gram matrices of module outputs, queued during a forward pass and solved together afterwards.

The RMT guard needs ``σ_max(Ŷ)`` of each tracked module's output ``Y`` (``m`` tokens x ``n``
features) with every column standardised to zero mean and unit variance. For a narrow output the
hooks keep only the centred Gram ``Y_cᵀY_c`` (``n x n``); its diagonal holds the column variances,
and a non-finite activation shows up there as NaN.

A plain linear layer (``torch.nn.Linear``, transformers' ``Conv1D``: ``y = x A + b``, ``A`` of
``k x n``) is measured from its *input* when that is no larger than its output, or when the layer
reads the same tensor as the layer before it (query, key and value; gate and up). The centred
output is ``Y_c = X_c A``; with ``RᵀR = X_cᵀX_c`` (Cholesky) and ``S = R A`` the output's column
variances are the squared column norms of ``S`` over ``m``, and after scaling those columns to
unit variance ``σ_max(Ŷ) = σ_max(S)``: exact up to rounding, one input Gram shared by the layers
that read it, and a ``min(k, n)``-sided eigenproblem.

After the pass all queued problems are standardised and solved in stacks, grouped by shape, so the
cost is a handful of batched operations rather than a few per module.

Beside each ratio the queue keeps what the standardisation already has in hand, for the RMT
guard's collapse checks: the mean column variance of the (unstandardised) output, the fraction
of its columns that are not constant (*live*), and the stable rank ``‖Ŷ‖²_F / σ²_max(Ŷ)`` of the
standardised output, which is ``live · m / σ²`` because each live standardised column has squared
norm ``m``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from typing import Any

import attrs

from invarlock_core.optional_deps import require
from invarlock_guards.spectral_norm import (
    KrylovSettings,
    gram_stack_singular_values,
    scaled_singular_value,
)

__all__ = ["RMT_KRYLOV", "GramQueue", "Spread", "column_scales", "edge_ratio", "linear_map"]

RMT_KRYLOV = KrylovSettings(tolerance=5e-3, max_iterations=32, block_size=4)
"""Krylov settings of the RMT ratios (tolerance on σ; the guard's ε bands are 10%)."""


def linear_map(module: Any, torch: Any) -> Any | None:
    """The ``in x out`` matrix ``A`` with ``output = input @ A + bias`` of a plain linear layer
    whose input side is small enough for a Gram (a view, never a copy), or ``None`` for any other
    module (subclasses may compute something else)."""
    kind = type(module)
    if kind is torch.nn.Linear:
        matrix = module.weight.mT
    elif kind.__name__ == "Conv1D" and kind.__module__ == "transformers.pytorch_utils":
        matrix = module.weight
    else:
        return None
    return matrix if matrix.ndim == 2 and matrix.shape[0] <= RMT_KRYLOV.gram_below else None


def column_scales(variance: Any, torch: Any) -> Any:
    """``1/std`` per column; constant columns get 0 (they carry no direction). Batched over the
    leading dimensions."""
    std = variance.clamp_min(0.0).sqrt()
    # A float32 variance is at least ~1e-45, so 1/std stays finite; NaN compares False.
    live = std > 1e-12 * std.amax(dim=-1, keepdim=True)
    return torch.where(live, std.reciprocal(), 0.0)


def edge_ratio(sigma: float, rows: int, cols: int) -> float:
    """``σ`` over the Marchenko–Pastur bulk edge ``√rows + √cols`` of a pure-noise matrix."""
    return sigma / (math.sqrt(rows) + math.sqrt(cols))


@attrs.frozen
class Spread:
    """How one batch's output of a module is spread: what the collapse checks compare."""

    variance: float
    """Mean column variance of the unstandardised output."""
    live: float
    """Fraction of the output columns that are not constant."""
    rank: float
    """Stable rank of the standardised output (0 when every column is constant)."""
    tokens: int


def _spread(sigma: float, total: float, live: float, rows: int, cols: int) -> Spread:
    """A :class:`Spread` from ``σ_max`` of the standardised output and its column statistics."""
    rank = live * rows / (sigma * sigma) if sigma > 0.0 else 0.0
    return Spread(variance=total / cols, live=live / cols, rank=rank, tokens=rows)


def _column_statistics(variance: Any, scales: Any, torch: Any) -> Any:
    """``[..., 2]``: the summed column variance and the count of live (non-constant) columns."""
    return torch.stack([variance.sum(dim=-1), (scales > 0).sum(dim=-1).to(variance.dtype)], -1)


def _output_sided(matrix: Any) -> bool:
    """Whether a linear layer's ``A`` (``k x n``) is solved on its output side (``SᵀS``): only when
    its output is narrower and its input is too wide to solve exactly. Otherwise the input side
    is as cheap to solve, and the layer joins its input's one stack and one solve."""
    k, n = int(matrix.shape[0]), int(matrix.shape[1])
    return n < k and k > RMT_KRYLOV.exact_below


def _centred_gram(activation: Any) -> tuple[Any, int]:
    """``CᵀC`` of an activation's centred columns (tokens x features), and its token count."""
    matrix = activation.detach().reshape(-1, activation.shape[-1]).float()
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    return centred.mT @ centred, int(matrix.shape[0])


def _grouped(items: Iterable[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = {}
    for key, item in items:
        groups.setdefault(key, []).append(item)
    return groups


def _roots(stack: Any, torch: Any) -> tuple[Any, list[bool]]:
    """``R`` with ``RᵀR ≈ G`` for each Gram of a ``[batch, k, k]`` stack, as one stack, and
    whether each Gram was finite (a non-finite one gets an arbitrary ``R``).

    ``R`` is the Cholesky factor ``Lᵀ`` of the Gram plus a ridge of ``k·ε₃₂`` times its mean
    diagonal: a float32 Gram is only known to about that precision, and a singular one (a LayerNorm
    output lies in a hyperplane; a feature may be constant) is indefinite at that level without
    the ridge. The ridge moves ``σ²`` by less than ``k·ε₃₂`` relative (``8e-6`` at ``k = 64``).
    ``Λ^½ Qᵀ`` from a float64 eigendecomposition is the fallback.
    """
    side = int(stack.shape[-1])
    identity = torch.eye(side, dtype=stack.dtype, device=stack.device)
    finite: list[bool] = torch.isfinite(stack.diagonal(dim1=1, dim2=2)).all(dim=1).tolist()
    if not all(finite):
        flags = torch.tensor(finite, device=stack.device)
        stack = torch.where(flags[:, None, None], stack, identity)
    epsilon = torch.finfo(torch.float32).eps
    ridge = side * epsilon * stack.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30)
    lower, info = torch.linalg.cholesky_ex(stack + ridge[:, None, None] * identity)
    for position, status in enumerate(info.tolist()):
        if status != 0 and finite[position]:
            values, vectors = torch.linalg.eigh(stack[position].double())
            lower[position] = (vectors * values.clamp_min(0.0).sqrt()).float()
    return lower.mT, finite


@attrs.define
class GramQueue:
    """The RMT problems of one pass: queued per batch by the hooks, solved by :meth:`solve`."""

    seed: int
    ratios: dict[str, list[tuple[float, int, int]]] = attrs.field(factory=dict)
    """Module -> (ratio, tokens, features) per batch, filled by :meth:`solve`."""
    spreads: dict[str, list[Spread]] = attrs.field(factory=dict)
    """Module -> its output's spread per batch, filled with :attr:`ratios`."""
    nonfinite: set[str] = attrs.field(factory=set)
    """Modules with a non-finite activation."""
    ready: list[tuple[tuple[str, ...], Any, tuple[int, ...], tuple[int, ...], Any]] = attrs.field(
        factory=list
    )
    """Standardised Grams in stacks of one size: (modules, ``[batch, side, side]`` stack, tokens,
    output features, ``[batch, 2]`` summed column variance and live columns)."""
    outputs: list[tuple[str, Any, int]] = attrs.field(factory=list)
    """This batch's output Grams: (module, centred ``YᵀY``, tokens)."""
    inputs: list[tuple[Any, int]] = attrs.field(factory=list)
    """This batch's input Grams of linear layers: (centred ``XᵀX``, tokens)."""
    linear: list[tuple[str, int, Any]] = attrs.field(factory=list)
    """This batch's linear layers: (module, index into ``inputs``, ``A``)."""
    last_input: tuple[Any, int] | None = None
    """The last input Gram's tensor (weakly) and index: shared by layers reading one tensor."""

    def add_output(self, name: str, activation: Any) -> None:
        """Queue a narrow output by its centred Gram; measure a wide one now (Krylov iteration on
        the centred output with the column scaling applied on the fly; it then goes out of
        scope)."""
        torch = require("torch", purpose="activation probes")
        cols = int(activation.shape[-1])
        rows = activation.numel() // max(1, cols)
        if cols <= min(rows, RMT_KRYLOV.gram_below):
            gram, rows = _centred_gram(activation)
            self.outputs.append((name, gram, rows))
            return
        matrix = activation.detach().reshape(-1, cols).float()
        centred = matrix - matrix.mean(dim=0)
        variance = centred.pow(2).mean(dim=0)  # (torch.var_mean is ~7x slower over dim 0)
        # A non-finite activation makes its column's variance non-finite (so does one whose
        # square overflows float32: it counts as non-finite too).
        if not bool(torch.isfinite(variance).all()):
            self.nonfinite.add(name)
            return
        # The column scaling is applied inside the iteration: no standardised copy is made.
        scales = column_scales(variance, torch)
        sigma = scaled_singular_value(centred, scales, name, seed=self.seed, settings=RMT_KRYLOV)
        total, live = _column_statistics(variance, scales, torch).tolist()
        self.ratios.setdefault(name, []).append((edge_ratio(sigma, rows, cols), rows, cols))
        self.spreads.setdefault(name, []).append(_spread(sigma, total, live, rows, cols))

    def shares_input(self, activation: Any) -> bool:
        """Whether the last linear layer queued read this very tensor (its Gram is free)."""
        return self.last_input is not None and self.last_input[0]() is activation

    def add_linear(self, name: str, matrix: Any, activation: Any) -> None:
        """Queue a linear layer's output by its input ``activation`` and matrix ``A``."""
        if self.shares_input(activation):
            assert self.last_input is not None
            index = self.last_input[1]
        else:
            self.inputs.append(_centred_gram(activation))
            index = len(self.inputs) - 1
            self.last_input = (weakref.ref(activation), index)
        self.linear.append((name, index, matrix))

    def close_batch(self) -> None:
        """Standardise this batch's Grams, stacked by shape, into :attr:`ready`."""
        torch = require("torch", purpose="activation probes")
        self.last_input = None
        with torch.no_grad():
            self._standardise_outputs(torch)
            self._standardise_linear(torch)

    def _standardise_outputs(self, torch: Any) -> None:
        for members in _grouped((int(g.shape[0]), (n, g, r)) for n, g, r in self.outputs).values():
            stack = torch.stack([gram for _n, gram, _r in members])
            rows = torch.tensor([float(r) for _n, _g, r in members])[:, None]
            variance = stack.diagonal(dim1=1, dim2=2) / rows
            scales = column_scales(variance, torch)
            columns = _column_statistics(variance, scales, torch)
            stack = stack * scales[:, :, None] * scales[:, None, :]
            side = int(stack.shape[-1])
            names = tuple(name for name, _gram, _rows in members)
            tokens = tuple(count for _name, _gram, count in members)
            self.ready.append((names, stack, tokens, (side,) * len(members), columns))
        self.outputs.clear()

    def _standardise_linear(self, torch: Any) -> None:
        # The input Grams of one width are stacked and factored together; each stack of linear
        # layers gathers its roots, Grams and token counts from those by index.
        solved: dict[int, tuple[Any, Any, Any]] = {}
        positions: dict[int, int] = {}  # input index -> position in its width's stack
        usable_inputs: set[int] = set()
        widths = _grouped(
            (int(gram.shape[0]), index) for index, (gram, _rows) in enumerate(self.inputs)
        )
        for side, members in widths.items():
            grams = torch.stack([self.inputs[i][0] for i in members]).float()
            roots, finite = _roots(grams, torch)
            rows = torch.tensor([float(self.inputs[i][1]) for i in members], device=grams.device)
            solved[side] = (grams, roots, rows)
            for position, (index, ok) in enumerate(zip(members, finite)):
                positions[index] = position
                if ok:
                    usable_inputs.add(index)
        usable = []
        for name, index, matrix in self.linear:
            if index in usable_inputs:
                usable.append((name, index, matrix))
            else:
                self.nonfinite.add(name)
        # Up to two stacks per input width: layers solved as ``S Sᵀ`` (input-sized) and, for an
        # input wider than the exact-solve size, layers with fewer outputs than inputs solved as
        # ``SᵀS`` (output-sized: k and v of grouped-query attention). Narrower outputs are
        # zero-padded to the widest of their stack: a zero column has no variance, gets scale 0
        # and adds only zero eigenvalues. (Merging a small model's k and v into the input-sized
        # stack measured 13% less time for the standardisation and solves of tiny LLaMA.)
        stacks = _grouped(((int(a.shape[0]), _output_sided(a)), (n, i, a)) for n, i, a in usable)
        for (side, narrow), members in stacks.items():
            grams, roots, rows = solved[side]
            widest = max(int(a.shape[1]) for _n, _i, a in members)
            # (The caller runs without autograd: no detach is needed.)
            weights = torch.stack(
                [
                    torch.nn.functional.pad(a, (0, widest - int(a.shape[1])))
                    if a.shape[1] < widest
                    else a
                    for _n, _i, a in members
                ]
            ).to(roots)
            at = torch.tensor([positions[i] for _n, i, _a in members], device=roots.device)
            factor = roots[at] @ weights
            # Column variances from the exact Gram (not the ridged root): a column that only a
            # constant input feeds keeps variance 0, hence scale 0, as its output Gram would give.
            variance = ((grams[at] @ weights) * weights).sum(dim=1) / rows[at][:, None]
            scales = column_scales(variance, torch)
            factor = factor * scales[:, None, :]
            small = factor.mT @ factor if narrow else factor @ factor.mT
            names = tuple(name for name, _i, _a in members)
            tokens = tuple(self.inputs[i][1] for _n, i, _a in members)
            features = tuple(int(a.shape[1]) for _n, _i, a in members)
            # Padded columns have variance 0: they are not live and add nothing to the total.
            columns = _column_statistics(variance, scales, torch)
            self.ready.append((names, small, tokens, features, columns))
        self.inputs.clear()
        self.linear.clear()

    def pending(self) -> int:
        """Elements of the standardised Grams still to solve (what keeping them costs)."""
        return sum(int(stack.numel()) for _n, stack, _t, _f, _c in self.ready)

    def solve(self, *others: GramQueue) -> None:
        """Solve every standardised Gram into :attr:`ratios`: stacks of one exactly solvable size
        together, larger ones zero-padded to one size (padding adds only zero eigenvalues) for one
        stacked Krylov run.

        The problems of ``others`` (queues of the same seed: a baseline's and a subject's) join
        the same stacks, and their results go to their own queues: one set of batched solves
        instead of one per queue. A module's start vectors depend only on its name and the seed,
        so its estimate does not depend on its company beyond the solve's tolerance.
        """
        queues = tuple({id(queue): queue for queue in (self, *others)}.values())
        if any(queue.seed != self.seed for queue in others):
            raise ValueError("queues solved together must share one seed")
        problems = [(queue, problem) for queue in queues for problem in queue.ready]
        if not problems:
            return
        torch = require("torch", purpose="activation probes")
        exact = RMT_KRYLOV.exact_below
        large = max(
            (int(p[1].shape[-1]) for _q, p in problems if p[1].shape[-1] > exact), default=0
        )
        members: dict[tuple[int, str], list[tuple[GramQueue, str, int, int]]] = {}
        stacks: dict[tuple[int, str], list[Any]] = {}
        columns: dict[tuple[int, str], list[Any]] = {}
        for queue, (names, stack, tokens, features, statistics) in problems:
            side = int(stack.shape[-1])
            if exact < side < large:
                stack = torch.nn.functional.pad(stack, (0, large - side, 0, large - side))
                side = large
            key = (side, str(stack.device))
            members.setdefault(key, []).extend(
                (queue, name, rows, cols) for name, rows, cols in zip(names, tokens, features)
            )
            stacks.setdefault(key, []).append(stack)
            columns.setdefault(key, []).append(statistics)
        for key, group in members.items():
            parts = stacks[key]
            stack = parts[0] if len(parts) == 1 else torch.cat(parts)
            keys = [name for _queue, name, _rows, _cols in group]
            sigmas = gram_stack_singular_values(stack, keys, seed=self.seed, settings=RMT_KRYLOV)
            spread = torch.cat(columns[key]).tolist()
            for (queue, name, rows, cols), sigma, (total, live) in zip(
                group, sigmas.tolist(), spread
            ):
                if math.isnan(sigma):
                    queue.nonfinite.add(name)
                else:
                    ratio = edge_ratio(sigma, rows, cols)
                    queue.ratios.setdefault(name, []).append((ratio, rows, cols))
                    queue.spreads.setdefault(name, []).append(
                        _spread(sigma, total, live, rows, cols)
                    )
        for queue in queues:
            queue.ready.clear()
