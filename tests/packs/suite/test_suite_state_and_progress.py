"""Run state helpers: pinned revisions, HF cache placement, and the progress view."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from invarlock_core.errors import InputError
from invarlock_core.scheduling import SchedulingKnobs, Task, TaskCommand, TaskGraph, run_graph
from invarlock_packs.suite.model_sources import hf_environment, hub_cache
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.progress import ProgressWatcher
from invarlock_packs.suite.revisions import write_revisions
from invarlock_packs.suite.run_layout import RunLayout

FAST = SchedulingKnobs(worker_idle_sleep=0.02, worker_heartbeat_interval=0.2, num_gpus=1)


def test_revisions_come_from_the_revisions_file_offline(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    given = tmp_path / "revisions.json"
    given.write_text(json.dumps({"revisions": {"org/model": "abc123"}}))
    models = [SuiteModel("org__model", "org/model"), SuiteModel("tiny-gpt2", "tiny:gpt2")]
    pinned = write_revisions(layout, models, {"PACK_MODEL_REVISIONS_FILE": str(given)}, net=False)
    assert [m.revision for m in pinned] == ["abc123", None]
    written = json.loads(layout.revisions.read_text())
    assert written == {"revisions": {"org/model": "abc123"}, "net": False}


def test_a_malformed_revisions_file_is_an_input_error(tmp_path: Path) -> None:
    given = tmp_path / "revisions.json"
    given.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected an object"):
        write_revisions(
            RunLayout(tmp_path), [], {"PACK_MODEL_REVISIONS_FILE": str(given)}, net=False
        )


def test_hf_cache_lives_in_the_run_unless_configured(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    assert hub_cache(layout, {}) == tmp_path / ".hf" / "hub"
    assert hub_cache(layout, {"HF_HOME": "/data/hf"}) == Path("/data/hf/hub")
    assert hub_cache(layout, {"HF_HOME": "/a", "HF_HUB_CACHE": "/b"}) == Path("/b")
    offline = hf_environment(layout, {}, net=False)
    assert offline["HF_HOME"] == str(tmp_path / ".hf")
    assert offline["HF_HUB_OFFLINE"] == "1"
    online = hf_environment(layout, {"HF_HOME": "/data/hf"}, net=True)
    assert "HF_HOME" not in online
    assert online["HF_HUB_OFFLINE"] == "0"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("progress")
    tasks = (
        Task("a", command=TaskCommand(entry_point="builtins:print", params={"x": 1})),
        Task("b", deps=("a",), command=TaskCommand(entry_point="builtins:print")),
    )
    run_graph(out, TaskGraph(tasks), knobs=FAST)
    return out


def test_plain_progress_prints_one_line_per_finished_task(finished_run: Path) -> None:
    stream = io.StringIO()
    watcher = ProgressWatcher(finished_run, stream=stream)
    watcher.poll()
    watcher.poll()  # nothing new: nothing printed twice
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[2/2] completed a ")
    assert lines[1].startswith("[2/2] completed b ")


def test_terminal_progress_is_a_live_bar(finished_run: Path) -> None:
    stream = Terminal()
    watcher = ProgressWatcher(finished_run, stream=stream).start()
    watcher.stop()
    text = stream.getvalue()
    assert "2/2" in text
    assert "failed=0" in text


def test_progress_before_the_queue_exists_shows_nothing(tmp_path: Path) -> None:
    stream = io.StringIO()
    ProgressWatcher(tmp_path, stream=stream).poll()
    assert stream.getvalue() == ""
