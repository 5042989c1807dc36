"""Per-window negative log-likelihood of a causal LM: the only torch code of the primary metric.

A window of ``seq_len`` tokens scores ``seq_len − 1`` next-token predictions. Windows are run in
batches under ``torch.inference_mode``; the cross-entropy is taken in float32 whatever the model's
dtype. A non-finite window loss is returned as NaN, never raised: the verdict turns it into a
FAIL with a reason.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from invarlock_core.optional_deps import require

if TYPE_CHECKING:
    from invarlock_core.guarding import ForwardObserver

__all__ = ["batches", "score_windows", "window_nll"]


def batches(ids: npt.NDArray[np.int64], batch: int) -> list[npt.NDArray[np.int64]]:
    """Consecutive row blocks of at most ``batch`` windows."""
    return [ids[i : i + batch] for i in range(0, ids.shape[0], max(1, batch))]


def window_nll(logits: Any, input_ids: Any) -> Any:
    """Mean next-token NLL per window (float32 ``[windows]``) from a causal LM's logits.

    The one definition of the primary metric's per-window loss: guards that score windows
    themselves use it too, so their numbers match the evaluation's bit for bit.
    """
    torch = require("torch", purpose="scoring evaluation windows")
    shifted = logits[:, :-1, :]
    targets = input_ids[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        shifted.float().reshape(-1, shifted.shape[-1]), targets.reshape(-1), reduction="none"
    ).view(targets.shape)
    return nll.mean(dim=1)


def score_windows(
    model: Any,
    ids: npt.NDArray[np.int64],
    *,
    device: str,
    batch: int = 8,
    label: str = "",
    observers: Sequence[ForwardObserver] = (),
) -> npt.NDArray[np.float64]:
    """Mean NLL per window (``[windows]`` float64; NaN where the model's loss is not finite).

    ``observers`` see every batch (:class:`~invarlock_core.guarding.ForwardObserver`); finishing
    them is the caller's job.
    """
    torch = require("torch", purpose="scoring evaluation windows")
    out = np.empty(ids.shape[0], dtype=np.float64)
    blocks = batches(ids, batch)
    progress = None
    if label and sys.stderr.isatty():
        tqdm = require("tqdm", purpose="progress bars").tqdm
        progress = tqdm(total=len(blocks), desc=label, leave=False, file=sys.stderr)
    row = 0
    with torch.inference_mode():
        for block in blocks:
            inputs = torch.from_numpy(np.ascontiguousarray(block)).to(device)
            for observer in observers:
                observer.begin_batch(inputs)
            logits = model(input_ids=inputs, use_cache=False).logits
            out[row : row + block.shape[0]] = window_nll(logits, inputs).double().cpu().numpy()
            for observer in observers:
                observer.end_batch(inputs, out[row : row + block.shape[0]].tolist())
            row += block.shape[0]
            if progress is not None:
                progress.update(1)
    if progress is not None:
        progress.close()
    return out
