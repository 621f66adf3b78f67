"""Stored experiments: declarations refused before training, resumable runs, and the build's checks
(a tampered, truncated, stale or unreproducible result fails, naming the command that refreshes it)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrlib import experiments as ex
from lrlib.trials import Trial, run_trial

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
question: Does a tiny MLP on the digits train at these rates?
base: {data: digits, model: mlp, hidden: [16], optimizer: sgd, schedule: cosine, steps: 30, batch_size: 32}
grid:
  lr: [0.03, 0.3]
  schedule_args.total_steps: [30]
seeds: [0, 1]
trace_every: 5
check: {trials: 2, steps: 20}
"""


def _tiny(folder: Path) -> Path:
    (folder / "tiny.yaml").write_text(TINY, encoding="utf-8")
    return folder


@pytest.fixture
def stored(tmp_path):
    ex.run_experiment("tiny", root=_tiny(tmp_path), progress=False)
    return tmp_path


def test_a_stored_experiment_holds_every_trial_with_provenance_and_reproduces(stored):
    exp = ex.load_experiment("tiny", root=stored)
    assert len(exp.results) == 4 and list(exp.results.columns[:4]) == ["trial", "lr", "total_steps", "seed"]
    p = exp.provenance
    assert p["declaration_sha256"] == exp.declaration.sha256() and p["code_sha256"] == ex.code_sha256()
    assert {"torch", "lrlib", "python", "device", "date", "trial_seconds_total"} <= set(p)
    assert exp.rerun.reproduced.all() and len(exp.rerun) == 2
    # the stored trace is the run itself: trial 3 (lr 0.3, seed 1) trained alone, step for step
    alone = run_trial(Trial.from_dict(json.loads(exp.results.config[3])))
    trace = exp.trace(3)
    np.testing.assert_allclose(trace.loss, alone.run.losses[trace.step], rtol=1e-4)
    assert exp.results.val_loss[3] == pytest.approx(alone.val_loss, rel=1e-4)
    assert "make experiments NAME=tiny" in exp.source_note()
    assert not (stored / "tiny" / "partial.jsonl").exists()


def test_curve_summaries_read_the_validation_curves(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY.replace("batch_size: 32}", "batch_size: 32, eval_every: 10}"))
    ex.run_experiment("tiny", root=tmp_path, progress=False)
    exp = ex.load_experiment("tiny", root=tmp_path)
    curves = exp.val_curves
    assert sorted(curves.step.unique()) == [10, 20, 30]
    lowest = exp.best_val_loss()
    assert lowest[0] == pytest.approx(curves[curves.trial == 0].val_loss.min())
    last = curves[(curves.trial == 0) & (curves.step == 30)].val_loss.iloc[0]
    assert exp.results.val_loss[0] == pytest.approx(last)  # the end of training is the last point
    target = float(curves[curves.trial == 0].val_loss.iloc[1])  # reached at step 20 at the latest
    assert exp.steps_to(target)[0] <= 20
    assert np.isinf(exp.steps_to(-1.0)).all()


def test_an_edited_number_is_caught_by_its_hash(stored):
    path = stored / "tiny" / "results.csv"
    frame = pd.read_csv(path)
    frame.loc[0, "val_loss"] *= 0.9
    frame.to_csv(path, index=False)
    with pytest.raises(ex.ExperimentError,
                       match="results.csv does not match the hash.*make experiments NAME=tiny"):
        ex.load_experiment("tiny", root=stored)
    assert ex.status(stored).state.tolist() == ["tampered"]


def test_a_truncated_trace_is_caught(stored):
    path = stored / "tiny" / "traces.csv"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ex.ExperimentError, match="traces.csv does not match the hash"):
        ex.read_experiment("tiny", root=stored)


def test_a_forged_trace_with_a_matching_hash_fails_the_rerun(stored):
    """Someone edits a trace and the hash in provenance.json: the rerun of the sample still catches it."""
    folder = stored / "tiny"
    traces = pd.read_csv(folder / "traces.csv")
    traces.loc[traces.step == 10, "loss"] += 0.05
    text = traces.to_csv(index=False, float_format="%.9g", lineterminator="\n")
    (folder / "traces.csv").write_text(text)
    prov = json.loads((folder / "provenance.json").read_text())
    import hashlib

    prov["files"]["traces.csv"] = hashlib.sha256(text.encode()).hexdigest()
    (folder / "provenance.json").write_text(json.dumps(prov))
    ex.read_experiment("tiny", root=stored)  # the cheap checks pass: only the rerun can tell
    with pytest.raises(ex.ExperimentError, match=r"does not reproduce its stored trace: step 10"):
        ex.verify_experiment("tiny", root=stored, trials=4)


def test_a_changed_declaration_makes_the_result_stale(stored):
    path = stored / "tiny.yaml"
    path.write_text(path.read_text().replace("steps: 30", "steps: 31"))
    with pytest.raises(ex.ExperimentError, match="stale: experiments/tiny.yaml changed.*NAME=tiny"):
        ex.load_experiment("tiny", root=stored)
    assert ex.status(stored).state.tolist() == ["stale"]
    # a comment or a reordering is not a change of what runs
    path.write_text("# a note\n" + path.read_text().replace("steps: 31", "steps: 30"))
    ex.read_experiment("tiny", root=stored)


def test_changed_training_code_makes_the_result_stale(stored, monkeypatch):
    monkeypatch.setattr(ex, "code_sha256", lambda: "0" * 64)
    with pytest.raises(ex.ExperimentError, match="stale: the training code"):
        ex.read_experiment("tiny", root=stored)


def test_the_code_hash_ignores_docstrings_but_not_code(tmp_path, monkeypatch):
    import lrlib

    fake = tmp_path / "lrlib"
    fake.mkdir()
    for module in ex.CODE_MODULES:
        (fake / f"{module}.py").write_text((Path(lrlib.__file__).parent / f"{module}.py").read_text())
    monkeypatch.setattr(lrlib, "__file__", str(fake / "__init__.py"))
    before = ex.code_sha256()
    path = fake / "schedules.py"
    text = path.read_text()
    path.write_text(text.replace('"""', '"""Reworded. ', 1))
    assert ex.code_sha256() == before
    path.write_text(text + "\nX = 1\n")
    assert ex.code_sha256() != before


@pytest.mark.parametrize("edit,match", [
    (("optimizer: sgd", "optimizer: sgdd"), "optimizer must be one of"),
    (("lr: [0.03, 0.3]", "lr: []"), "grid.lr must be a non-empty list"),
    (("seeds: [0, 1]", "seeds: [0, 0]"), "seeds must not repeat"),
    (("steps: 30", "steps: 0"), "steps must be"),
    (("trace_every: 5", "trace_evry: 5"), "unknown key"),
    (("lr: [0.03, 0.3]", "lr: [0.03, 0.03]"), "grid.lr holds a value twice"),
    (("lr: [0.03, 0.3]", "lr: [0.03, -1]"), "lr must be"),
])
def test_a_malformed_declaration_is_refused_before_anything_trains(tmp_path, edit, match):
    (tmp_path / "bad.yaml").write_text(TINY.replace(*edit))
    with pytest.raises(ValueError, match=match) as error:
        ex.run_experiment("bad", root=tmp_path, progress=False)
    assert "bad" in str(error.value)
    assert not (tmp_path / "bad").exists()


def test_an_unknown_name_lists_the_experiments(tmp_path):
    _tiny(tmp_path)
    with pytest.raises(ValueError, match=r"name must be one of the experiments \['tiny'\], got 'tinny'"):
        ex.run_experiment("tinny", root=tmp_path)


def test_a_run_killed_mid_way_resumes_without_losing_or_repeating_a_trial(tmp_path):
    """SIGKILL after the first batched group is stored; the rerun trains only the other group."""
    text = TINY.replace("grid:\n", "grid:\n  batch_size: [16, 32]\n").replace(", batch_size: 32}", "}")
    (tmp_path / "tiny.yaml").write_text(text)
    script = textwrap.dedent(f"""
        import os, signal, sys
        from lrlib import experiments as ex, trials
        real = trials.run_trial_batch
        calls = []
        def once_then_die(batch, **kw):
            if calls:
                os.kill(os.getpid(), signal.SIGKILL)
            calls.append(1)
            return real(batch, **kw)
        trials.run_trial_batch = once_then_die
        ex.run_experiment("tiny", root={str(tmp_path)!r}, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = tmp_path / "tiny" / "partial.jsonl"
    kept = [json.loads(line) for line in partial.read_text().splitlines()]
    assert len(kept) == 1 + 4  # the stamp and the first group's four trials
    # a half-written line (killed mid-write) is dropped, not read
    with partial.open("a") as f:
        f.write('{"key": "cut-off')
    from lrlib import trials

    seen = []
    real = trials.run_trial_batch

    def counting(batch, **kw):
        seen.append(len(batch))
        return real(batch, **kw)

    trials.run_trial_batch, saved = counting, trials.run_trial_batch  # run_trials looks it up per call
    try:
        ex.run_experiment("tiny", root=tmp_path, progress=False)
    finally:
        trials.run_trial_batch = saved
    assert seen == [4]  # only the second group trained again
    exp = ex.load_experiment("tiny", root=tmp_path)
    assert len(exp.results) == 8 and sorted(exp.results.batch_size.unique()) == [16, 32]


def test_a_partial_file_from_other_code_is_set_aside(tmp_path, monkeypatch):
    _tiny(tmp_path)
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "partial.jsonl").write_text(json.dumps({"declaration_sha256": "x", "code_sha256": "y"}) + "\n")
    ex.run_experiment("tiny", root=tmp_path, progress=False)
    assert (folder / "partial.jsonl.stale").exists()
    ex.load_experiment("tiny", root=tmp_path)


def test_the_command_line_lists_runs_and_verifies(tmp_path):
    _tiny(tmp_path)
    env = {**os.environ, "LRLIB_EXPERIMENTS": str(tmp_path)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "lrlib.experiments", *args], cwd=ROOT,  # noqa: E731
                                       capture_output=True, text=True, timeout=600, env=env)
    listed = run("--list")
    assert listed.returncode == 0 and "tiny" in listed.stdout and "missing" in listed.stdout
    done = run()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tiny: stored in experiments/tiny/" in done.stdout and "minutes" in done.stdout
    assert "fresh, nothing to run" in run("tiny").stdout
    verified = run("--verify")
    assert verified.returncode == 0 and "reproduced 2 trials' first 20 steps" in verified.stdout
    bad = run("nosuch")
    assert bad.returncode != 0 and "name must be one of the experiments" in bad.stderr


def test_every_stored_experiment_of_the_book_is_fresh():
    """The repository's own experiments: present, not stale, not tampered (the book reruns samples)."""
    table = ex.status(ROOT / "experiments")
    assert len(table) >= 2
    assert table.state.eq("fresh").all(), (
        "stored experiments not fresh; run `make experiments` for:\n"
        + table[table.state != "fresh"].to_string())


def test_the_books_extension_stops_the_build_on_a_tampered_experiment_and_reexecutes_readers(stored,
                                                                                              tmp_path):
    """book/_ext/stored_experiments.py runs the rerun check when the builder starts (every build, cache
    or not) and drops the cached outputs of the chapters that read an experiment whose files changed."""
    from types import SimpleNamespace

    from sphinx.errors import ExtensionError

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import stored_experiments as ext
    finally:
        sys.path.pop(0)
    site = tmp_path / "site"
    site.mkdir()
    (site / "experiments").symlink_to(stored)
    (stored / "tiny.yaml").write_text((stored / "tiny.yaml").read_text() + "used_by: [book/ch.md]\n")
    ex.run_experiment("tiny", root=stored, progress=False)  # used_by is not part of what runs: still fresh
    cache = site / "_build" / ".jupyter_cache"
    import nbformat
    from jupyter_cache import get_cache

    page = site / "book" / "ch.md"
    page.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=1, outputs=[])])
    nbformat.write(nb, page.with_suffix(".ipynb"))
    add = lambda: get_cache(cache).cache_notebook_file(page.with_suffix(".ipynb"), uri=str(page),  # noqa: E731
                                                       check_validity=False)
    add()
    app = SimpleNamespace(srcdir=str(site), outdir=str(site / "_build" / "html"),
                          config=SimpleNamespace(nb_execution_cache_path=str(cache)))
    ext.verify(app)  # fresh: passes; the cache was built with unknown results, so the reader reruns
    assert get_cache(cache).list_cache_records() == []
    add()
    ext.verify(app)  # nothing changed since: the cached outputs stay
    assert len(get_cache(cache).list_cache_records()) == 1
    prov = stored / "tiny" / "provenance.json"
    prov.write_text(prov.read_text().replace('"date": "', '"date": "1'))  # a refresh changes provenance
    ext.verify(app)
    assert get_cache(cache).list_cache_records() == []  # the reader's cached outputs are gone
    results = stored / "tiny" / "results.csv"
    results.write_text(results.read_text().replace("0.", "1.", 1))
    with pytest.raises(ExtensionError, match="tiny"):
        ext.verify(app)


def test_a_declaration_may_train_each_trial_alone_and_the_check_reruns_it_the_same_way(tmp_path):
    (tmp_path / "alone.yaml").write_text(TINY + "batched: false\n")
    (tmp_path / "tiny.yaml").write_text(TINY)
    assert ex.declaration("alone", tmp_path).sha256() != ex.declaration("tiny", tmp_path).sha256()
    ex.run_experiment("alone", root=tmp_path, progress=False)
    exp = ex.load_experiment("alone", root=tmp_path)
    assert exp.rerun.max_abs_diff.max() < 1e-7  # alone and rerun alone: equal to the 9 digits stored
    (tmp_path / "bad.yaml").write_text(TINY + "batched: no-thanks\n")
    with pytest.raises(ValueError, match="batched must be true or false"):
        ex.declaration("bad", tmp_path)
