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
* Every ``gate_window`` steps the gate decides. In distributed runs the metric values are
  averaged over ranks first, so every rank takes the same decision; only world rank 0 writes
  artifacts. On FAIL with ``stop_on_fail`` it sets ``control.should_training_stop``.
* Resume: the gate state is saved as ``veriscope_state.json`` in each ``checkpoint-N`` folder and
  picked up when ``trainer.train(resume_from_checkpoint=...)`` continues from it. The callback is
  also an ``ExportableState``, so ``restore_callback_states_from_checkpoint=True`` works too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from invarlock_core.atomic import atomic_write_json
from invarlock_core.optional_deps import require
from veriscope_gate.errors import VeriscopeUsageError
from veriscope_gate.probe import LayerProbe
from veriscope_gate.records import GateRecord
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
        self._loss_armed = False
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
        config = getattr(model, "config", None)
        self.session = GateSession(
            self.outdir, gate_preset=self.gate_preset, overrides=self.overrides, run_id=self.run_id,
            controls=self.controls, metrics=metrics,
            runner={"kind": "hf_callback", "model_type": str(getattr(config, "model_type", "unknown"))},
            probe={"layer": name, "sketch_dim": self.sketch_dim, "max_tokens": self.max_tokens,
                   "jl_seed": self.seed},
            write=bool(state.is_world_process_zero),
        )
        resume = self.resume_state or self._checkpoint_state(state)
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
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Save the gate state next to the checkpoint (world rank 0)."""
        if self.session is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                atomic_write_json(folder / STATE_FILE, self.session.state())
        return control

    def _capture_loss(self, _module: Any, _inputs: Any, output: Any) -> None:
        if not self._loss_armed or self._loss is not None:
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
            self._loss_armed = True
            self._loss = None
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.session is None or self.probe is None:
            return control
        step = int(state.global_step)
        packed = self.probe.packed()
        if packed is not None:
            import torch

            parts = [packed] + ([self._loss.to(packed.device)] if self._loss is not None else [])
            host = torch.cat(parts).cpu().numpy()  # the probe step's single host sync
            loss = float(host[-1]) if self._loss is not None else None
            values = self.probe.collect(host[: packed.numel()])
            values, loss = self._agree(values, loss)
            self.session.record(step, values, loss)
            self._loss_armed = False
            self._loss = None
        if self.session.is_gate_step(step):
            record = self.session.evaluate(step)
            self.last_record = record
            self.records.append(record)
            if record.decision == "fail" and self.stop_on_fail:
                control.should_training_stop = True
        return control

    def _agree(self, values: dict[str, float], loss: float | None) -> tuple[dict[str, float], float | None]:
        """Average the probe values over ranks so that every rank takes the same decision."""
        import torch

        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return values, loss
        names = sorted(values)
        t = torch.tensor([values[n] for n in names] + [loss if loss is not None else 0.0],
                         dtype=torch.float64, device=self._device)
        dist.all_reduce(t)
        t /= dist.get_world_size()
        host = t.cpu().tolist()
        return dict(zip(names, host[:-1])), (host[-1] if loss is not None else None)

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
