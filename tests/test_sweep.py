"""lrlib.sweep: the seed log read exactly, statistics against scipy, a sweep that survives being killed."""

import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, chi2_contingency

from lrlib.sweep import (
    LogParseError,
    accuracy_interval,
    compare_accuracies,
    parse_log,
    pick_lr,
    run_sweep,
    summarize,
    vertex_lr,
)

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "book" / "data" / "sst5_lr_sweep.log"

# The seeds' own summary of their sweep (file 002, the table "关键指标汇总"), transcribed as published:
# lr, best dev acc, test acc, final train loss, final train acc.
SEEDS_SUMMARY = """
1e-7 0.271 0.259 2.145 0.262
1e-6 0.291 0.278 1.734 0.304
1e-5 0.410 0.398 1.266 0.550
2e-5 0.410 0.393 0.989 0.775
1e-4 0.390 0.409 0.981 0.763
1e-3 0.374 0.402 0.934 0.751
"""


def _parse_quietly(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_log(text)


def test_the_shipped_log_gives_the_seeds_summary_exactly():
    log = _parse_quietly(LOG.read_text(encoding="utf-8"))
    expected = pd.DataFrame([line.split() for line in SEEDS_SUMMARY.split("\n") if line.strip()],
                            columns=["lr", "dev_acc", "test_acc", "train_loss", "train_acc"]).astype(float)
    expected = expected.sort_values("lr", ignore_index=True)
    pd.testing.assert_frame_equal(log.final, expected[["lr", "dev_acc", "test_acc"]])
    last = log.epochs.groupby("lr").tail(1).reset_index(drop=True)
    np.testing.assert_array_equal(last.train_loss, expected.train_loss)
    np.testing.assert_array_equal(last.train_acc, expected.train_acc)
    assert log.epochs.groupby("lr").epoch.apply(list).map(lambda e: e == [0, 1, 2, 3, 4]).all()
    best_dev = log.epochs.groupby("lr").dev_acc.max().to_numpy()
    np.testing.assert_array_equal(best_dev, log.final.dev_acc)  # the final dev is the best epoch's


def test_the_whole_seed_file_parses_the_same_when_present():
    seed = ROOT.parent / "shared" / "seeds" / "002_7ac2728629b5b021.txt"
    if not seed.exists():
        pytest.skip("../shared/seeds is not beside this checkout")
    with pytest.warns(UserWarning, match="skipped .* line"):
        whole = parse_log(seed.read_text(encoding="utf-8"))
    shipped = _parse_quietly(LOG.read_text(encoding="utf-8"))
    pd.testing.assert_frame_equal(whole.final, shipped.final)
    pd.testing.assert_frame_equal(whole.epochs, shipped.epochs)


RUN = """##### {lr}
epoch 0: train loss :: 1.900, train acc :: 0.290, dev acc :: 0.270
epoch 1: train loss :: 1.600, train acc :: 0.400, dev acc :: 0.350
dev acc :: 0.350
test acc :: 0.340
"""


def test_debris_crlf_blank_lines_and_spellings_of_a_rate():
    messy = ("\r\n\r\n" + RUN.format(lr="1e-05").replace("0.350\n", "0.350█▌ \n", 1).replace("\n", "\r\n")
             + "\r\n\r\n" + RUN.format(lr="0.0002"))
    log = parse_log(messy)
    assert log.final.lr.tolist() == [1e-5, 2e-4]
    assert log.epochs.dev_acc.tolist() == [0.27, 0.35, 0.27, 0.35]
    decimal, scientific = parse_log(RUN.format(lr="0.00001")), parse_log(RUN.format(lr="1e-05"))
    assert decimal.final.lr.tolist() == scientific.final.lr.tolist() == [1e-5]


def test_a_run_cut_off_is_kept_with_its_final_results_missing():
    cut = RUN.format(lr="1e-4") + "##### 1e-3\n"
    cut += "epoch 0: train loss :: 2.0, train acc :: 0.3, dev acc :: 0.26\n"
    log = parse_log(cut)
    assert log.final.lr.tolist() == [1e-4, 1e-3]
    assert math.isnan(log.final.dev_acc[1]) and math.isnan(log.final.test_acc[1])
    assert log.epochs[log.epochs.lr == 1e-3].dev_acc.tolist() == [0.26]


def test_non_records_and_a_restarted_header_are_skipped_with_one_warning():
    text = "##### 1e-5 \npython run.py --lr 1e-5\n\n" + RUN.format(lr="1e-5") + "some prose\n"
    with pytest.warns(UserWarning, match=r"skipped 3 line\(s\).*lines 1, 2, 9"):
        log = parse_log(text)
    assert log.final.lr.tolist() == [1e-5] and len(log.epochs) == 2
    assert [n for n, _ in log.skipped] == [1, 2, 9]


@pytest.mark.parametrize("bad,number,why", [
    (RUN.format(lr="1e-5") + "epoch 2: train loss :: oops\n", 6, "cannot read this epoch record"),
    ("epoch 0: train loss :: 1.0, train acc :: 0.2, dev acc :: 0.2\n", 1, "before any '##### <lr>' header"),
    ("##### 1e-5x\n", 1, "needs one positive learning rate"),
    ("##### -1e-5\n", 1, "needs one positive learning rate"),
    (RUN.format(lr="1e-5") + "test acc :: high\n", 6, "cannot read this final accuracy"),
])
def test_a_broken_record_raises_quoting_the_line_and_its_number(bad, number, why):
    with pytest.raises(LogParseError, match=f"line {number}: .*{why}") as info:
        parse_log(bad)
    assert info.value.number == number and info.value.line in bad


# --- statistics ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(451, 1101), (0, 50), (50, 50), (1, 2210), (888, 2210), (7, 9)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_wilson_interval_is_scipys(k, n, level):
    ours = accuracy_interval(k / n, n, level)
    theirs = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    np.testing.assert_allclose(ours, (theirs.low, theirs.high), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("a,b,n_a,n_b", [(904, 868, 2210, 2210), (451, 412, 1101, 1101), (30, 20, 100, 80)])
def test_two_proportion_z_test_is_the_chi_square_test(a, b, n_a, n_b):
    ours = compare_accuracies(a / n_a, b / n_b, n_a, n_b)
    table = [[a, n_a - a], [b, n_b - b]]
    chi2, p, *_ = chi2_contingency(table, correction=False)
    assert ours.p_value == pytest.approx(p, rel=1e-9)
    assert ours.z**2 == pytest.approx(chi2, rel=1e-9)
    low, high = ours.interval
    assert low < ours.difference < high


def test_pick_lr_on_the_seed_log_says_the_top_two_are_indistinguishable():
    log = _parse_quietly(LOG.read_text(encoding="utf-8"))
    dev = pick_lr(log.final, n=1101, column="dev_acc")
    assert {dev.lr, dev.runner_up} == {1e-5, 2e-5} and dev.comparison.difference == 0
    assert "not distinguishable" in str(dev)
    test = pick_lr(log.final, n=2210, column="test_acc")
    assert test.lr == 1e-4 and test.comparison.p_value > 0.05  # the test set ranks them differently
    assert (dev.table.low < dev.table.dev_acc).all() and (dev.table.dev_acc < dev.table.high).all()


@pytest.mark.parametrize("call,match", [
    (lambda: accuracy_interval(1.2, 10), r"acc must be in \[0, 1\], got 1.2"),
    (lambda: accuracy_interval(0.5, 0), "n must be >= 1"),
    (lambda: accuracy_interval(0.5, 10, level=1.0), r"level must be in \(0, 1\), got 1.0"),
    (lambda: compare_accuracies(0.5, -0.1, 10), r"acc_b must be in \[0, 1\]"),
    (lambda: pick_lr(pd.DataFrame({"lr": [1e-5], "dev_acc": [0.4]}), 100), "need at least two rates"),
    (lambda: parse_log(b"bytes"), "text must be a str"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- running a sweep ------------------------------------------------------------------------------------

def quadratic_trial(config):
    """A pure function of its config: noisy 'loss' of a rate, as a training run would give."""
    rng = np.random.default_rng(config["seed"])
    return {"loss": float((math.log10(config["lr"]) + 2) ** 2 + 0.01 * rng.standard_normal())}


def test_run_sweep_here_and_in_an_executor_give_the_same_table(tmp_path):
    here = run_sweep(quadratic_trial, [1e-3, 1e-2, 1e-1], seeds=[0, 1])
    with ThreadPoolExecutor(3) as pool:
        there = run_sweep(quadratic_trial, [1e-3, 1e-2, 1e-1], seeds=[0, 1], executor=pool)
    pd.testing.assert_frame_equal(here, there)
    assert len(here) == 6 and here.lr.tolist() == [1e-3, 1e-3, 1e-2, 1e-2, 1e-1, 1e-1]
    table = summarize(here, "loss")
    assert table.loc[1e-2, "mean"] == pytest.approx(0.0, abs=0.05) and (table["count"] == 2).all()


def test_results_stream_to_the_file_and_a_rerun_runs_nothing_again(tmp_path):
    path = tmp_path / "sweep.jsonl"
    calls = []

    def counted(config):
        calls.append(config["lr"])
        return quadratic_trial(config)

    first = run_sweep(counted, [1e-3, 1e-2], seeds=[0, 1], results=path, extra={"model": "mlp"})
    assert len(path.read_text().splitlines()) == 4 and len(calls) == 4
    again = run_sweep(counted, [1e-3, 1e-2, 1e-1], seeds=[0, 1], results=path, extra={"model": "mlp"})
    assert calls[4:] == [1e-1, 1e-1]  # only the new rate ran
    pd.testing.assert_frame_equal(again[again.lr < 0.05].reset_index(drop=True), first)
    assert (again.model == "mlp").all()


def test_a_batch_fn_trains_the_remaining_trials_in_chunks_and_streams_them(tmp_path):
    path = tmp_path / "sweep.jsonl"
    chunks = []

    def batch(configs):
        chunks.append([(c["lr"], c["seed"]) for c in configs])
        return [quadratic_trial(c) for c in configs]

    run_sweep(quadratic_trial, [1e-3], seeds=[0, 1], results=path)  # two trials already done
    frame = run_sweep(quadratic_trial, [1e-3, 1e-2, 1e-1], seeds=[0, 1], results=path, batch_fn=batch,
                      max_batch=3)
    assert chunks == [[(1e-2, 0), (1e-2, 1), (1e-1, 0)], [(1e-1, 1)]]  # only what was left, 3 at a time
    pd.testing.assert_frame_equal(frame, run_sweep(quadratic_trial, [1e-3, 1e-2, 1e-1], seeds=[0, 1]))
    assert len(path.read_text().splitlines()) == 6
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        run_sweep(quadratic_trial, [1.0], batch_fn=batch, max_batch=0)


SCRIPT = """
import json, sys, time
from lrlib.sweep import run_sweep

def trial(config):
    time.sleep(0.3)
    with open(sys.argv[2], "a") as f:
        f.write(json.dumps(config) + "\\n")
    return {"score": config["lr"] * 1000 + config["seed"]}

if __name__ == "__main__":
    run_sweep(trial, [1e-4, 1e-3, 1e-2], seeds=[0, 1, 2], results=sys.argv[1])
"""


def test_a_killed_sweep_resumes_with_no_finished_trial_run_twice(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    results, finished = tmp_path / "results.jsonl", tmp_path / "finished.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(results), str(finished)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(results.read_text().splitlines())
    assert 3 <= done_before < 9, "the sweep should have been killed part-way"
    subprocess.run([sys.executable, str(script), str(results), str(finished)], env=env, check=True)
    runs = [json.dumps(json.loads(line), sort_keys=True) for line in finished.read_text().splitlines()]
    completed = [json.loads(line)["key"] for line in results.read_text().splitlines()]
    assert len(completed) == len(set(completed)) == 9  # every trial recorded exactly once
    assert len(runs) - len(set(runs)) <= 1  # at most the trial killed between its end and its record
    sys.path.insert(0, str(tmp_path))
    try:
        import sweep_script
    finally:
        sys.path.remove(str(tmp_path))
    table = run_sweep(sweep_script.trial, [1e-4, 1e-3, 1e-2], seeds=[0, 1, 2], results=results)
    assert table.score.tolist() == [lr * 1000 + s for lr in (1e-4, 1e-3, 1e-2) for s in (0, 1, 2)]


def test_a_half_written_last_line_is_run_again_and_a_corrupt_file_is_an_error(tmp_path):
    path = tmp_path / "sweep.jsonl"
    run_sweep(quadratic_trial, [1e-3, 1e-2], results=path)
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][:10])  # killed while writing the second record
    calls = []

    def counted(config):
        calls.append(config["lr"])
        return quadratic_trial(config)

    for _ in range(3):  # the cut-off line goes; later resumes find a clean file and run nothing
        table = run_sweep(counted, [1e-3, 1e-2], results=path)
    assert len(table) == 2 and calls == [1e-2]
    assert path.read_text().splitlines() == lines
    path.write_text(lines[0][:15])  # cut off while writing the very first record
    assert len(run_sweep(quadratic_trial, [1e-3], results=path)) == 1
    assert path.read_text().splitlines() == [lines[0]]
    path.write_text("not json\n" + lines[0] + "\n")
    with pytest.raises(ValueError, match="line 1 is not a JSON record"):
        run_sweep(quadratic_trial, [1e-3], results=path)


def test_dask_executor_when_installed():
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        table = run_sweep(quadratic_trial, [1e-3, 1e-2], seeds=[0, 1], executor=client.get_executor())
    pd.testing.assert_frame_equal(table, run_sweep(quadratic_trial, [1e-3, 1e-2], seeds=[0, 1]))


def test_a_sweep_on_a_multi_process_dask_cluster_equals_the_sweep_here(tmp_path):
    """A real LocalCluster: two worker processes, none of them this one; results streamed
    by the driver, and a rerun against the file trains nothing."""
    distributed = pytest.importorskip("distributed")
    from lrlib.trials import sweep_trial

    extra = {"model": "mlp", "optimizer": "adam", "steps": 30, "hidden": [16]}
    path = tmp_path / "sweep.jsonl"
    environ = dict(os.environ)  # the nannies set OMP_NUM_THREADS=1 in this process: put it back
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            pids = set(client.run(os.getpid, wait=True).values())
            there = run_sweep(sweep_trial, [1e-3, 1e-2], seeds=[0, 1, 2], extra=extra,
                              executor=client.get_executor(), results=path)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    assert len(pids) == 2 and os.getpid() not in pids
    here = run_sweep(sweep_trial, [1e-3, 1e-2], seeds=[0, 1, 2], extra=extra)
    np.testing.assert_allclose(there.val_loss, here.val_loss, rtol=1e-5)  # threads may reorder sums
    assert len(path.read_text().splitlines()) == 6

    def never(config):
        raise AssertionError("a finished trial ran again")

    pd.testing.assert_frame_equal(run_sweep(never, [1e-3, 1e-2], seeds=[0, 1, 2], extra=extra, results=path),
                                  there)


def test_run_sweep_rejects_bad_input():
    with pytest.raises(ValueError, match="lrs must be a non-empty list of positive rates"):
        run_sweep(quadratic_trial, [])
    with pytest.raises(ValueError, match="lrs must be a non-empty list of positive rates"):
        run_sweep(quadratic_trial, [0.0])
    with pytest.raises(TypeError, match="train_fn must return a dict"):
        run_sweep(lambda config: 1.0, [1e-3])


def test_vertex_lr_finds_a_parabolas_vertex_between_grid_points():
    rng = np.random.default_rng(0)
    lrs = np.logspace(-4, 0, 9)  # a factor sqrt(10) apart
    for _ in range(20):
        centre = rng.uniform(-3.4, -0.6)  # inside the grid, away from its ends
        losses = 0.3 + 2.0 * (np.log10(lrs) - centre) ** 2
        assert math.log10(vertex_lr(lrs, losses)) == pytest.approx(centre, abs=1e-9)
    # any curve: the vertex of numpy's parabola through the three lowest-centred points
    losses = np.array([2.0, 1.1, 0.5, 0.31, 0.29, 0.8, np.nan, np.nan, np.nan])
    a, b, _ = np.polyfit(np.log(lrs[3:6]), losses[3:6], 2)
    assert vertex_lr(lrs, losses) == pytest.approx(math.exp(-b / (2 * a)), rel=1e-9)


def test_vertex_lr_at_the_grid_ends_and_bad_input():
    lrs = [1e-3, 1e-2, 1e-1]
    assert vertex_lr(lrs, [0.1, 0.2, 0.3]) == 1e-3  # not bracketed: the grid's best
    assert vertex_lr(lrs, [0.3, 0.2, float("nan")]) == 1e-2  # a diverged neighbour: no parabola
    assert vertex_lr(lrs, [0.3, 0.2, 0.1]) == 1e-1
    with pytest.raises(ValueError, match="lrs"):
        vertex_lr([1e-3, 1e-2], [0.1, 0.2])
    with pytest.raises(ValueError, match="increasing"):
        vertex_lr([1e-2, 1e-3, 1e-1], [0.3, 0.2, 0.1])
