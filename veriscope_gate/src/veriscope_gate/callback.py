"""``VeriscopeCallback``: the gate as a Hugging Face ``Trainer`` callback.

Usage::

    from veriscope_gate.callback import VeriscopeCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[VeriscopeCallback("out/gate", gate_preset="tuned_v0",
                                                   stop_on_fail=True)])
    trainer.train()

* ``on_train_begin`` checks prerequisites (the probed block exists, a hidden size is known) and
  fails fast with a one-line :class:`~veriscope_gate.errors.VeriscopeUsageError`.
* Every ``metric_interval`` optimizer steps the probe is armed; its forward hook sketches the
  block's output **of the training forward pass itself** (no extra forward) on the training
  device. Between probes nothing is synchronised with the host; on a probe step the sketch and
  the loss move to the host in one transfer.
* Every ``gate_window`` steps the gate decides. On FAIL with ``stop_on_fail`` it sets
  ``control.should_training_stop``.
* Distributed runs (``torch.distributed`` initialised, world size > 1): at start one collective
  checks that every rank registers the same metrics (else every rank raises
  :class:`~veriscope_gate.errors.VeriscopeUsageError` instead of deadlocking later). On each
  probe step every rank (with or without a sketch of its own) joins **one** ``all_reduce`` of a
  fixed-length vector in sorted metric-name order: per metric the sum of the finite values and
  the count of ranks that had one, the same for the loss, and the count of ranks that sketched.
  Every rank so records the mean over the ranks with a finite value (NaN where none had one)
  and takes the same decision; only world rank 0 writes artifacts.
* Resume: the gate state is saved as ``veriscope_state.json`` in each ``checkpoint-N`` folder and
  picked up when ``trainer.train(resume_from_checkpoint=...)`` continues from it. The callback is
  also an ``ExportableState``, so ``restore_callback_states_from_checkpoint=True`` works too.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from invarlock_core.atomic import atomic_write_json
from invarlock_core.optional_deps import require
from veriscope_gate.errors import VeriscopeUsageError
from veriscope_gate.probe import LayerProbe
from veriscope_gate.records import GateRecord
from veriscope_gate.serialization import read_json_object
from veriscope_gate.session import GateSession

require("transformers", purpose="VeriscopeCallback")
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import ExportableState  # noqa: E402

__all__ = ["VeriscopeCallback", "find_last_block"]

_BLOCK_LISTS = ("h", "layers", "layer", "blocks")
STATE_FILE = "veriscope_state.json"
"""Written into each ``checkpoint-N`` folder; read back when training resumes from it."""


def find_last_block(model: Any, layer: str | None = None) -> tuple[str, Any]:
    """The module to probe: ``layer`` by name, else the last block of the deepest block list."""
    import torch

    if layer is not None:
        try:
            return layer, model.get_submodule(layer)
        except AttributeError:
            raise VeriscopeUsageError(f"model has no submodule {layer!r} to probe") from None
    best: tuple[str, Any] | None = None
    for name, module in model.named_modules():
        if (isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in _BLOCK_LISTS
                and len(module) and (best is None or len(module) >= len(best[1]))):
            best = (name, module)
    if best is None:
        raise VeriscopeUsageError(
            "cannot find the transformer blocks to probe; pass layer='<module name>'"
        )
    return f"{best[0]}.{len(best[1]) - 1}", best[1][-1]


def _slot(value: float | None) -> tuple[float, float]:
    """``(value, 1)`` for a finite value, ``(0, 0)`` for a missing or non-finite one."""
    if value is None or not math.isfinite(value):
        return 0.0, 0.0
    return float(value), 1.0


def _pack_probe(names: Sequence[str], values: Mapping[str, float], loss: float | None,
                sketched: bool) -> list[float]:
    """One rank's share of the probe's all_reduce (SUM): always ``3 + 2·len(names)`` floats.

    Layout ``[ranks that sketched, loss sum, ranks with a finite loss, then per metric of
    names: sum of finite values, ranks with a finite value]``, so the length and order never
    depend on what this rank happened to compute.
    """
    vec = [1.0 if sketched else 0.0, *_slot(loss)]
    for name in names:
        vec.extend(_slot(values.get(name)))
    return vec


def _unpack_probe(names: Sequence[str], vec: Sequence[float]) -> tuple[dict[str, float], float | None] | None:
    """The reduced vector as means over the ranks with a finite value (NaN / ``None`` where no
    rank had one); ``None`` when no rank sketched (nothing to record)."""
    if vec[0] <= 0:
        return None
    loss = vec[1] / vec[2] if vec[2] > 0 else None
    values = {
        name: vec[3 + 2 * i] / vec[4 + 2 * i] if vec[4 + 2 * i] > 0 else math.nan
        for i, name in enumerate(names)
    }
    return values, loss


def _distributed() -> Any:
    """``torch.distributed`` when a process group of two or more ranks is up, else ``None``."""
    import torch

    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def _hidden_size(model: Any) -> int:
    config = getattr(model, "config", None)
    for key in ("hidden_size", "n_embd", "d_model", "dim"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise VeriscopeUsageError("cannot determine the model's hidden size from its config")


class VeriscopeCallback(TrainerCallback, ExportableState):
    """Gate a ``Trainer`` run with Veriscope (see the module docstring)."""

    def __init__(
        self,
        outdir: str,
        gate_preset: str = "tuned_v0",
        overrides: dict[str, Any] | None = None,
        layer: str | None = None,
        sketch_dim: int = 64,
        max_tokens: int = 1024,
        stop_on_fail: bool = False,
        run_id: str | None = None,
        seed: int = 0,
        close_on_train_end: bool = True,
    ) -> None:
        from veriscope_gate.controls import load_preset

        self.outdir = str(outdir)
        self.gate_preset = gate_preset
        self.overrides = dict(overrides) if overrides else None
        self.controls = load_preset(gate_preset, self.overrides)  # fail fast on bad presets
        self.layer = layer
        self.sketch_dim = sketch_dim
        self.max_tokens = max_tokens
        self.stop_on_fail = stop_on_fail
        self.run_id = run_id
        self.seed = seed
        self.close_on_train_end = close_on_train_end
        self.resume_state: dict[str, Any] | None = None
        self.session: GateSession | None = None
        self.probe: LayerProbe | None = None
        self.last_record: GateRecord | None = None
        self.records: list[GateRecord] = []
        self._loss: Any = None
        self._probe_step = False
        self._metric_names: list[str] = []
        self._loss_handle: Any = None
        self._t0: float | None = None
        self._output_dir: str | None = None
        self._device: Any = None

    # -- ExportableState ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "args": {
                "outdir": self.outdir, "gate_preset": self.gate_preset, "overrides": self.overrides,
                "layer": self.layer, "sketch_dim": self.sketch_dim, "max_tokens": self.max_tokens,
                "stop_on_fail": self.stop_on_fail,
                "run_id": self.session.run_id if self.session else self.run_id,
                "seed": self.seed, "close_on_train_end": self.close_on_train_end,
            },
            "attributes": {
                "resume_state": self.session.state() if self.session else self.resume_state,
            },
        }

    # -- lifecycle ------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if model is None:
            raise VeriscopeUsageError("VeriscopeCallback needs the Trainer's model")
        find_last_block(model, self.layer)
        _hidden_size(model)
        self._t0 = time.perf_counter()
        return control

    def _start(self, state: Any, model: Any) -> None:
        import torch

        from veriscope_gate.plugins import get_metric_registry

        name, block = find_last_block(model, self.layer)
        metrics = [reg.item for reg in get_metric_registry()]
        self._device = next(model.parameters()).device
        self._metric_names = sorted(m.name for m in metrics)
        self._check_same_metrics()
        config = getattr(model, "config", None)
        resume = self.resume_state or self._checkpoint_state(state)
        run_id = self.run_id
        if run_id is None and resume and not state.is_world_process_zero:
            # a non-writing rank may not see rank 0's capsule (and its run id): take the checkpoint's
            run_id = resume.get("run_id")
        self.session = GateSession(
            self.outdir, gate_preset=self.gate_preset, overrides=self.overrides, run_id=run_id,
            controls=self.controls, metrics=metrics,
            runner={"kind": "hf_callback", "model_type": str(getattr(config, "model_type", "unknown"))},
            probe={"layer": name, "sketch_dim": self.sketch_dim, "max_tokens": self.max_tokens,
                   "jl_seed": self.seed},
            write=bool(state.is_world_process_zero),
        )
        if resume:
            self.session.load_state(resume)
        self.probe = LayerProbe(block, metrics, hidden_size=_hidden_size(model), dim=self.sketch_dim,
                                max_tokens=self.max_tokens, seed=self.seed, device=self._device)
        self._loss_handle = model.register_forward_hook(self._capture_loss)
        if self._t0 is None:
            self._t0 = time.perf_counter()
        _ = torch  # torch is required by the probe

    def _checkpoint_state(self, state: Any) -> dict[str, Any] | None:
        """The gate state saved in the checkpoint this run resumed from (if any)."""
        step = int(getattr(state, "global_step", 0) or 0)
        if step <= 0 or self._output_dir is None:
            return None
        path = Path(self._output_dir) / f"checkpoint-{step}" / STATE_FILE
        if not path.exists():
            return None
        return read_json_object(path)  # strict: the state decides what the gate resumes with

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Save the gate state next to the checkpoint (world rank 0)."""
        if self.session is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                atomic_write_json(folder / STATE_FILE, self.session.state())
        return control

    def _capture_loss(self, _module: Any, _inputs: Any, output: Any) -> None:
        if not self._probe_step or self._loss is not None:
            return
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, dict):
            loss = output.get("loss")
        if loss is not None:
            self._loss = loss.detach().float().reshape(1)

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        self._output_dir = getattr(args, "output_dir", None)
        if self.session is None:
            if model is None:
                return control
            self._start(state, model)
        assert self.session is not None
        assert self.probe is not None
        if (state.global_step + 1) % self.session.controls.metric_interval == 0:
            self.probe.arm()
            self._probe_step = True
            self._loss = None
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.session is None or self.probe is None:
            return control
        step = int(state.global_step)
        if self._probe_step:
            self._finish_probe(step)
        if self.session.is_gate_step(step):
            record = self.session.evaluate(step)
            self.last_record = record
            self.records.append(record)
            if record.decision == "fail" and self.stop_on_fail:
                control.should_training_stop = True
        return control

    def _finish_probe(self, step: int) -> None:
        """Collect this rank's sketch and loss, agree with the other ranks, record the probe.

        Runs on every probe step of the schedule, whether or not this rank's hook fired, so
        every rank joins the same collectives in the same order.
        """
        import torch

        assert self.session is not None
        assert self.probe is not None
        packed = self.probe.packed()
        values: dict[str, float] = {}
        loss: float | None = None
        if packed is not None:
            parts = [packed] + ([self._loss.to(packed.device)] if self._loss is not None else [])
            host = torch.cat(parts).cpu().numpy()  # the probe step's single host sync
            loss = float(host[-1]) if self._loss is not None else None
            values = self.probe.collect(host[: packed.numel()])
        else:
            self.probe.collect()  # nothing sketched here: disarm, do not carry over to the next step
            loss = float(self._loss) if self._loss is not None else None
        self._probe_step = False
        self._loss = None
        agreed = self._agree(values, loss, sketched=packed is not None)
        if agreed is not None:
            self.session.record(step, *agreed)

    def _reduce_device(self, dist: Any) -> Any:
        """Where the collective's tensor lives: the host for gloo/MPI (the values are already
        there), the training device for device-only backends such as NCCL."""
        backend = str(dist.get_backend())
        return "cpu" if "gloo" in backend or backend == "mpi" else self._device

    def _check_same_metrics(self) -> None:
        """Fail on every rank when the ranks register different metrics (once, at start).

        One all_reduce(MAX) of ``[n, −n, h, −h]`` (n metrics, h a CRC of their sorted names):
        every rank agrees iff max == −max(−x) for both, and every rank sees the same answer.
        """
        dist = _distributed()
        if dist is None:
            return
        import torch

        n = float(len(self._metric_names))
        h = float(zlib.crc32("\n".join(self._metric_names).encode("utf-8")))
        t = torch.tensor([n, -n, h, -h], dtype=torch.float64, device=self._reduce_device(dist))
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        hi_n, lo_n, hi_h, lo_h = t.cpu().tolist()
        if hi_n != -lo_n or hi_h != -lo_h:
            raise VeriscopeUsageError(
                "ranks register different Veriscope metrics (this rank: "
                f"{', '.join(self._metric_names) or 'none'}); install the same metric plugins "
                "and VERISCOPE_LOAD_PLUGINS / VERISCOPE_DISABLE_PLUGINS on every rank"
            )

    def _agree(self, values: dict[str, float], loss: float | None, *,
               sketched: bool) -> tuple[dict[str, float], float | None] | None:
        """The probe every rank records: per metric (and loss) the mean over the ranks with a
        finite value; ``None`` when no rank sketched. One all_reduce of a fixed-length vector."""
        vec = _pack_probe(self._metric_names, values, loss, sketched)
        dist = _distributed()
        if dist is not None:
            import torch

            t = torch.tensor(vec, dtype=torch.float64, device=self._reduce_device(dist))
            dist.all_reduce(t)
            vec = t.cpu().tolist()
        return _unpack_probe(self._metric_names, vec)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.close_on_train_end:
            self.finalize()
        return control

    def finalize(self, *, partial: bool = False, runner_signal: str | None = None) -> None:
        """Write the capsule's results and summary, and remove the hooks."""
        if self.session is None:
            return
        if self.probe is not None:
            self.session.add_gate_time(self.probe.elapsed_s)
            self.probe.elapsed_s = 0.0
            self.probe.remove()
            self.probe = None
        if self._loss_handle is not None:
            self._loss_handle.remove()
            self._loss_handle = None
        wall = time.perf_counter() - self._t0 if self._t0 is not None else None
        if not self.session.closed:
            self.session.close(partial=partial, runner_signal=runner_signal, runner_wall_s=wall)
