"""Secrets hygiene: allowlisted env capture, deny rules, argv redaction (fuzzed)."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veriscope_gate.capsule import RUN_CONFIG, build_run_config, write_run_config
from veriscope_gate.envcapture import REDACTED, capture_env, redact_argv
from veriscope_gate.validate import validate_capsule

SECRET_WORDS = ["TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "CREDENTIAL", "PRIVATE", "AUTH"]
name_part = st.text(alphabet=string.ascii_uppercase + string.digits + "_", min_size=0, max_size=8)
secret_value = st.text(alphabet=string.ascii_letters + string.digits + "-_+/=", min_size=12, max_size=40)


def test_only_allowlisted_names_are_captured() -> None:
    env = {"HOME": "/root", "AWS_SECRET_ACCESS_KEY": "abc", "CUDA_VISIBLE_DEVICES": "0", "RANK": "0",
           "VERISCOPE_MODE": "x", "SLURM_JOB_ID": "7", "PATH": "/bin"}
    cap = capture_env(env)
    assert cap.env == {"CUDA_VISIBLE_DEVICES": "0", "RANK": "0", "SLURM_JOB_ID": "7", "VERISCOPE_MODE": "x"}
    assert cap.redactions_applied is False


def test_redacted_keys_stay_present() -> None:
    cap = capture_env({"VERISCOPE_API_KEY": "k1", "SLURM_JOB_USER": "bob", "VERISCOPE_HF_TOKEN": "t",
                       "MASTER_ADDR": "https://user:pw@host/x"})
    assert cap.env == {"MASTER_ADDR": REDACTED, "SLURM_JOB_USER": REDACTED,
                       "VERISCOPE_API_KEY": REDACTED, "VERISCOPE_HF_TOKEN": REDACTED}
    assert cap.redactions_applied is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(["VERISCOPE_", "CUDA_", "SLURM_", "", "AWS_", "HF_"]),
       word=st.sampled_from(SECRET_WORDS), pre=name_part, post=name_part, value=secret_value,
       other_value=secret_value)
def test_secrets_never_reach_any_artifact(tmp_path: Path, prefix: str, word: str, pre: str, post: str,
                                          value: str, other_value: str) -> None:
    secret_name = f"{prefix}{pre}{word}{post}"
    unlisted = f"ZZ_{pre}{post}_NOT_ALLOWED"
    env = {secret_name: value, unlisted: other_value, "RANK": "0"}
    argv = ["veriscope", "run", "gpt", f"--{word.lower()}", value, f"--{word.lower()}-x={value}"]
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    write_run_config(out, build_run_config(out, kind="gpt", run_id="r1", gate_preset="tuned_v0",
                                           veriscope_argv=argv, runner_cmd=argv, environ=env))
    written = "".join(p.read_text(encoding="utf-8") for p in out.iterdir())
    assert value not in written
    assert other_value not in written
    cfg = json.loads((out / RUN_CONFIG).read_text())
    if secret_name in cfg["env"]:
        assert cfg["env"][secret_name] == REDACTED
        assert cfg["env_capture"]["redactions_applied"] is True


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--hf_token", "abc", "--lr", "3"], ["--hf_token", REDACTED, "--lr", "3"]),
     (["--api-key=abc"], [f"--api-key={REDACTED}"]),
     (["--data", "s3://me:pw@bucket/x"], ["--data", REDACTED]),
     (["--max_iters", "5"], ["--max_iters", "5"])],
)
def test_argv_redaction(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv)[0] == expected


def test_validate_rejects_unredacted_deny_matches(capsule_factory) -> None:  # type: ignore[no-untyped-def]
    out = capsule_factory("leak")
    cfg = json.loads((out / RUN_CONFIG).read_text())
    cfg["env"]["VERISCOPE_TOKEN"] = "plain"
    (out / RUN_CONFIG).write_text(json.dumps(cfg))
    report = validate_capsule(out)
    assert any("not redacted" in p for p in report.problems)
