"""Loading Hugging Face checkpoints from local directories, safely and offline by default.

* Only safetensors weights are loaded (pickled ``.bin`` files are never unpickled).
* Offline unless ``allow_network=True`` (``--net``): then a hub id may be downloaded and its
  resolved revision is recorded.
* ``trust_remote_code`` is off unless explicitly enabled.
* Every failure a user can cause (missing directory, no config, corrupt safetensors) raises
  :class:`~invarlock_core.errors.ModelLoadError`: one line, exit code 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.canonical import canonical_digest, file_sha256, prefixed
from invarlock_core.errors import ModelLoadError, TokenizerMismatchError, UsageError
from invarlock_core.optional_deps import require

__all__ = [
    "LoadedModel",
    "check_tokenizers_match",
    "checkpoint_files_digest",
    "load_model",
    "quiet_transformers",
    "resolve_device",
    "resolve_dtype",
    "safetensors_files",
    "tokenizer_fingerprint",
    "validate_checkpoint_dir",
]

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@attrs.define(eq=False)
class LoadedModel:
    """A model in eval mode with its tokenizer and provenance."""

    model: Any
    tokenizer: Any | None
    path: Path
    config: Any
    device: str
    dtype: str
    digest: str
    files: dict[str, str]
    revision: str | None = None


def resolve_device(spec: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda[:n]`` must exist."""
    torch = require("torch", purpose="choosing a device")
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: no CUDA device is available (use --device cpu)")
        index = spec.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UsageError(f"--device {spec}: no such CUDA device")
        return spec
    raise UsageError(f"--device {spec!r}: expected auto, cpu or cuda[:N]")


def resolve_dtype(spec: str, device: str, config: Any = None) -> Any:
    """``auto`` -> float32 on CPU, the checkpoint's dtype (else bfloat16) on CUDA."""
    torch = require("torch", purpose="choosing a dtype")
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if spec in names:
        return names[spec]
    if spec != "auto":
        raise UsageError(f"--dtype {spec!r}: expected auto, float32, float16 or bfloat16")
    if device == "cpu":
        return torch.float32
    declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(declared, str):
        declared = names.get(declared)
    return declared if declared in names.values() else torch.bfloat16


def safetensors_files(path: Path) -> list[Path]:
    """The ``*.safetensors`` files of a checkpoint directory, sorted."""
    return sorted(p for p in path.glob("*.safetensors") if p.is_file())


def validate_checkpoint_dir(path: str | Path) -> Path:
    """Check that ``path`` is a readable HF checkpoint directory with safetensors weights.

    Every safetensors header is parsed, so truncated or corrupt files fail here with the
    file's name rather than deep inside transformers.
    """
    directory = Path(path)
    if not directory.exists():
        raise ModelLoadError(f"model directory {directory} does not exist")
    if not directory.is_dir():
        raise ModelLoadError(f"{directory} is not a directory (expected a Hugging Face checkpoint)")
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"{directory} has no config.json (not a Hugging Face checkpoint)")
    try:
        json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{directory / 'config.json'} is not valid JSON: {exc}") from exc
    files = safetensors_files(directory)
    if not files:
        pickled = sorted(p.name for p in directory.glob("*.bin"))
        hint = " (pickled .bin weights are never loaded: convert them to safetensors)" if pickled else ""
        raise ModelLoadError(f"{directory} has no *.safetensors weights{hint}")
    safe_open = require("safetensors", purpose="reading checkpoints").safe_open
    for file in files:
        try:
            with safe_open(str(file), framework="numpy") as handle:
                handle.keys()
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"{file} is not a readable safetensors file: {first}") from exc
    return directory


_DIGEST_CACHE: dict[tuple[str, int, int], str] = {}


def checkpoint_files_digest(path: str | Path) -> tuple[str, dict[str, str]]:
    """``("sha256:<hex>", {relpath: hex})`` over every regular, non-hidden file of a checkpoint.

    The combined digest is the canonical-JSON digest of the per-file map. Per-file digests are
    cached in-process by (path, size, mtime).
    """
    directory = Path(path)
    files: dict[str, str] = {}
    for file in sorted(directory.rglob("*")):
        rel = file.relative_to(directory)
        if not file.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGEST_CACHE:
            _DIGEST_CACHE[key] = file_sha256(file)
        files[rel.as_posix()] = _DIGEST_CACHE[key]
    return prefixed(canonical_digest(files)), files


def _set_offline(allow_network: bool) -> None:
    if not allow_network:
        for name in _OFFLINE_ENV:
            os.environ[name] = "1"


def _download(repo_id: str, revision: str | None) -> tuple[Path, str]:
    hub = require("huggingface_hub", purpose="downloading models with --net")
    try:
        local = hub.snapshot_download(repo_id, revision=revision, allow_patterns=None)
        info = hub.HfApi().model_info(repo_id, revision=revision)
    except Exception as exc:
        raise ModelLoadError(f"could not download {repo_id!r}: {str(exc).splitlines()[0]}") from exc
    return Path(local), str(info.sha)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_model(
    path: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    allow_network: bool = False,
    revision: str | None = None,
    causal_lm: bool = True,
    with_tokenizer: bool = True,
) -> LoadedModel:
    """Load a checkpoint (``AutoModelForCausalLM``, or ``AutoModel`` when ``causal_lm=False``)."""
    _set_offline(allow_network)
    resolved_revision: str | None = None
    directory = Path(path)
    if not directory.exists() and allow_network and "/" in str(path):
        directory, resolved_revision = _download(str(path), revision)
    validate_checkpoint_dir(directory)
    transformers = require("transformers", purpose="loading Hugging Face models")
    quiet_transformers()
    device = resolve_device(device)
    try:
        config = transformers.AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelLoadError(
                f"{directory} needs custom model code; pass --trust-remote-code to allow it"
            ) from exc
        raise ModelLoadError(f"{directory}: invalid config: {_first_line(exc)}") from exc
    except Exception as exc:
        raise ModelLoadError(f"{directory}: invalid config: {_first_line(exc)}") from exc
    if getattr(config, "auto_map", None) and not trust_remote_code:
        raise ModelLoadError(f"{directory} needs custom model code; pass --trust-remote-code to allow it")
    torch_dtype = resolve_dtype(dtype, device, config)
    auto = transformers.AutoModelForCausalLM if causal_lm else transformers.AutoModel
    try:
        model = auto.from_pretrained(
            directory,
            config=config,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            dtype=torch_dtype,
        )
    except Exception as exc:
        raise ModelLoadError(f"{directory}: could not load weights: {_first_line(exc)}") from exc
    model.to(device)
    model.eval()
    tokenizer = _load_tokenizer(directory, trust_remote_code) if with_tokenizer else None
    digest, files = checkpoint_files_digest(directory)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=directory,
        config=config,
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        digest=digest,
        files=files,
        revision=resolved_revision,
    )


def quiet_transformers() -> None:
    """Silence transformers' progress bars and load reports (our CLI reports what matters)."""
    transformers = require("transformers", purpose="loading Hugging Face models")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _load_tokenizer(directory: Path, trust_remote_code: bool) -> Any | None:
    names = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model"}
    if not any((directory / name).is_file() for name in names):
        return None
    transformers = require("transformers", purpose="loading tokenizers")
    try:
        return transformers.AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        raise ModelLoadError(f"{directory}: could not load the tokenizer: {_first_line(exc)}") from exc


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of what decides token ids: the vocabulary and the special tokens."""
    vocab: Mapping[str, int] = tokenizer.get_vocab()
    specials = {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())}
    return prefixed(canonical_digest({"vocab": sorted(vocab.items()), "special": specials}))


_PROBE = "The quick brown fox jumps over the lazy dog; 1234 tokens, naive cafe, end."


def check_tokenizers_match(baseline: Any, subject: Any) -> str:
    """Raise :class:`TokenizerMismatchError` unless both tokenizers encode text identically.

    Returns the shared fingerprint.
    """
    if baseline is None or subject is None:
        missing = "baseline" if baseline is None else "subject"
        raise TokenizerMismatchError(f"the {missing} checkpoint has no tokenizer files")
    base_fp, subj_fp = tokenizer_fingerprint(baseline), tokenizer_fingerprint(subject)
    if base_fp != subj_fp or baseline.encode(_PROBE) != subject.encode(_PROBE):
        raise TokenizerMismatchError(
            "the subject's tokenizer differs from the baseline's "
            f"(baseline {base_fp[:19]}, subject {subj_fp[:19]}): windows could not be paired"
        )
    return base_fp
