"""Stored experiments: sweeps too big for a chapter, run once, stored with provenance, checked by every build.

A chapter must build in about a minute on two CPU cores, but a question such as
"where is the best rate for each batch size?" needs hundreds of training runs. So
the runs live in ``experiments/``, one *declaration* per question
(``experiments/<name>.yaml``: the grid of :class:`~lrlib.trials.Trial` fields, the
seeds, the budget), and ``make experiments`` (``python -m lrlib.experiments``) runs
every experiment whose stored result is missing or stale and writes, next to the
declaration, in ``experiments/<name>/``:

- ``results.csv``: one row per trial: the fields that vary, the trial's full
  configuration (JSON), validation and test loss and accuracy, the final training
  loss, whether and when it diverged, its seconds;
- ``traces.csv``: each trial's minibatch loss and rate every ``trace_every`` steps;
- ``val_curves.csv``: the validation loss every ``eval_every`` steps (when asked for);
- ``provenance.json``: hashes of the declaration, of the code that trained, and of
  each data file, the torch, lrlib and Python versions, device, date and wall time.

A chapter reads them with :func:`load_experiment`, which first checks them
(:func:`verify_experiment`): a declaration or training code that changed since the
run (*stale*), a data file that does not match its hash (*tampered*, or truncated),
or a rerun of a seeded sample of trials whose first steps do not reproduce the
stored trace beyond float tolerance, each raises :class:`ExperimentError` naming the
experiment and the command that refreshes it, so the build fails instead of
quoting a stale number.

Running is resumable: each finished trial (a batch of copies at a time) is appended
to ``experiments/<name>/partial.jsonl``, synced to disk, and a rerun skips what it
holds, so Ctrl-C or SIGKILL loses only the batch that was training.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import hashlib
import io
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lrlib._checks import check_int
from lrlib.jobs import append_record, read_records
from lrlib.trials import Trial, TrialResult, run_trials

#: Overrides where the declarations live (default: the ``experiments/`` folder of the checkout).
EXPERIMENTS_ENV_VAR = "LRLIB_EXPERIMENTS"
#: The modules whose code decides a trial's numbers; their hash (docstrings and comments
#: left out) is stored with every result, and a change makes the results stale.
CODE_MODULES = ("trials", "batched", "training", "models", "data", "schedules", "jobs", "landscapes",
                "update")
DATA_FILES = ("results.csv", "traces.csv", "val_curves.csv")
#: A declaration's keys (any other is refused).
DECLARATION_KEYS = {"question", "used_by", "base", "grid", "seeds", "trace_every", "max_batch", "batched",
                    "check"}
#: Float tolerance of the rerun check: the same code on the same device agrees to float32
#: reassociation (a batch of 3 copies against the stored batch of 32); across devices, less.
RTOL, ATOL = 2e-4, 1e-5
#: Threads per trial, when storing and when rerunning: a matrix product splits its sums
#: differently on 1 and 2 threads, and near the edge of stability a 1e-7 difference grows to
#: 1e-2 within 20 steps. One thread per trial (two workers for two cores) makes the rerun
#: the same arithmetic as the stored run.
THREADS = 1
RTOL_OTHER_DEVICE = 2e-2


class ExperimentError(RuntimeError):
    """A stored experiment that cannot be trusted (missing, stale, tampered or not reproduced);
    the message names the experiment and the command that refreshes it."""


def experiments_dir() -> Path:
    """``$LRLIB_EXPERIMENTS``, else the first ``experiments/`` folder in the working directory
    or one of its parents (a chapter runs in ``book/``, the Makefile at the top)."""
    if os.environ.get(EXPERIMENTS_ENV_VAR):
        return Path(os.environ[EXPERIMENTS_ENV_VAR])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "experiments").is_dir():
            return folder / "experiments"
    raise ExperimentError(f"no experiments/ folder in {here} or its parents; set ${EXPERIMENTS_ENV_VAR}")


def refresh_command(name: str) -> str:
    """The command that reruns one experiment."""
    return f"make experiments NAME={name}"


# --- declarations ------------------------------------------------------------------------------------

@dataclass
class Declaration:
    """What an experiment runs: ``base`` trial fields, a ``grid`` of fields whose every combination
    runs, on every seed of ``seeds``.

    Grid keys name :class:`~lrlib.trials.Trial` fields (``lr``, ``batch_size``, ...) or entries of its
    ``schedule_args`` as ``schedule_args.warmup_steps``. ``trace_every`` is the stride of the
    stored traces; ``check`` says how many trials every build reruns and for how many first steps;
    ``batched: false`` trains each trial alone (a model whose step is compute-bound gains nothing
    from copies), ``max_batch`` caps the copies in one batched model.
    """

    name: str
    question: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    used_by: list[str] = field(default_factory=list)
    trace_every: int = 10
    max_batch: int = 32
    check: dict[str, int] = field(default_factory=lambda: {"trials": 3, "steps": 40})
    text: str = ""
    batched: bool = True

    def trials(self) -> list[Trial]:
        """Every trial, the grid's combinations in declaration order, seeds innermost."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for seed in self.seeds:
                config = json.loads(json.dumps(self.base))  # a deep copy of plain data
                config.setdefault("schedule_args", {})
                for key, value in zip(keys, values):
                    if key.startswith("schedule_args."):
                        config["schedule_args"][key.split(".", 1)[1]] = value
                    else:
                        config[key] = value
                config["seed"] = seed
                try:
                    out.append(Trial.from_dict(config))
                except (TypeError, ValueError) as error:
                    raise ValueError(f"experiment {self.name!r}: the trial {_short(config)} is refused: "
                                     f"{error}") from None
        return out

    def sha256(self) -> str:
        """The hash of what runs: the parsed content, canonically serialised (comments, the
        question and the layout of the file do not count)."""
        content = {"base": self.base, "grid": self.grid, "seeds": self.seeds, "trace_every": self.trace_every}
        if not self.batched:  # trained alone, not as copies: other float rounding (a default is left out)
            content["batched"] = False
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _short(config: dict[str, Any]) -> str:
    keys = ("lr", "seed", "batch_size", "optimizer", "steps")
    return "{" + ", ".join(f"{k}={config[k]!r}" for k in keys if k in config) + "}"


def read_declaration(path: str | Path) -> Declaration:
    """Parse and check ``experiments/<name>.yaml``; every problem is refused before anything trains,
    with the field and the value named."""
    import yaml

    path = Path(path)
    name = path.stem
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: must be a mapping of {sorted(DECLARATION_KEYS)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - DECLARATION_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; keys are {sorted(DECLARATION_KEYS)}")
    for key in ("question", "base", "grid", "seeds"):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    if not isinstance(raw["question"], str) or not raw["question"].strip():
        raise ValueError(f"{path}: question must be a sentence, got {raw['question']!r}")
    if not isinstance(raw["base"], dict):
        raise ValueError(f"{path}: base must be a mapping of trial fields, got {raw['base']!r}")
    grid = raw["grid"]
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{path}: grid must be a non-empty mapping of field -> list of values, got {grid!r}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ValueError(f"{path}: grid.{key} holds a value twice: {values!r}")
        if key == "seed" or key in raw["base"]:
            raise ValueError(f"{path}: grid.{key} is also set in base or is the seed (use seeds)")
    seeds = raw["seeds"]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ValueError(f"{path}: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{path}: seeds must not repeat, got {seeds!r}")
    check = {"trials": 3, "steps": 40, **(raw.get("check") or {})}
    for key in ("trials", "steps"):
        check_int(f"{path}: check.{key}", check[key], minimum=1)
    used_by = raw.get("used_by") or []
    declaration = Declaration(name, raw["question"].strip(), raw["base"], grid, list(seeds), list(used_by),
                              check_int(f"{path}: trace_every", raw.get("trace_every", 10), minimum=1),
                              check_int(f"{path}: max_batch", raw.get("max_batch", 32), minimum=1),
                              check, text, _flag(path, "batched", raw.get("batched", True)))
    declaration.trials()  # every trial is built (and checked) now, before anything trains
    return declaration


def _flag(path: Path, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{path}: {key} must be true or false, got {value!r}")
    return value


def declarations(folder: str | Path | None = None) -> list[Declaration]:
    """Every declaration in the folder, by name."""
    folder = Path(folder) if folder is not None else experiments_dir()
    return [read_declaration(p) for p in sorted(folder.glob("*.yaml"))]


def declaration(name: str, folder: str | Path | None = None) -> Declaration:
    """The declaration ``experiments/<name>.yaml``."""
    folder = Path(folder) if folder is not None else experiments_dir()
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ValueError(f"name must be one of the experiments {known}, got {name!r}")
    return read_declaration(path)


# --- provenance --------------------------------------------------------------------------------------

def code_sha256() -> str:
    """A hash of the code that decides a trial's numbers (:data:`CODE_MODULES`): each module's
    syntax tree with its docstrings removed, so rewording a docstring or a comment leaves
    stored results valid and any change to what runs makes them stale."""
    import lrlib

    digest = hashlib.sha256()
    for module in CODE_MODULES:
        source = (Path(lrlib.__file__).parent / f"{module}.py").read_text(encoding="utf-8")
        tree = ast.parse(source)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        digest.update(module.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    import torch

    import lrlib

    return {"torch": torch.__version__, "lrlib": lrlib.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


# --- running -----------------------------------------------------------------------------------------

def _key(trial: Trial) -> str:
    return hashlib.sha256(json.dumps(trial.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _record(trial: Trial, result: TrialResult, stride: int) -> dict[str, Any]:
    """One finished trial as plain data: its configuration, outcome and strided traces."""
    run = result.run
    steps = np.arange(0, len(run.losses), stride)
    lrs = run.lrs if run.lrs is not None else np.full(len(run.losses), np.nan)
    return {"key": _key(trial), "config": trial.to_dict(),
            "val_loss": result.val_loss, "val_accuracy": result.val_accuracy,
            "test_loss": result.test_loss, "test_accuracy": result.test_accuracy,
            "final_train_loss": run.tail_mean(0.1), "diverged_at": run.diverged_at,
            "seconds": result.seconds, "trace_steps": steps.tolist(),
            "trace_loss": [_num(v) for v in run.losses[steps]],
            "trace_lr": [_num(v) for v in lrs[steps]],
            "val_steps": result.val_steps.tolist(), "val_losses": [_num(v) for v in result.val_losses]}


def _num(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _folder(decl: Declaration, root: Path | None) -> Path:
    return (root if root is not None else experiments_dir()) / decl.name


def run_experiment(name: str, *, device: str | None = None, workers: int = 1, executor: Any = None,
                   root: str | Path | None = None, progress: bool = True) -> Path:
    """Run an experiment's missing trials and store its results; returns its folder.

    Finished trials are appended to ``partial.jsonl`` as they finish (a batched group at a
    time) and skipped on a rerun, so an interrupted run resumes where it stopped. A partial
    file written by a different declaration or code is set aside (renamed ``.stale``), not mixed
    in. When every trial is done, the CSV files and ``provenance.json`` are written (each
    atomically) and the partial file removed.

    Args:
        name: the declaration's name (``experiments/<name>.yaml``).
        device: train here instead of the declaration's device (``"cuda"``); recorded.
        workers: worker processes (see :func:`lrlib.trials.run_trials`).
        executor: any ``concurrent.futures.Executor`` (Dask's ``client.get_executor()``).
        root: the experiments folder (default :func:`experiments_dir`).
        progress: show a progress bar (tqdm) on stderr.
    """
    root = Path(root) if root is not None else experiments_dir()
    decl = declaration(name, root)
    trials = decl.trials()
    if device is not None:
        trials = [Trial.from_dict({**t.to_dict(), "device": device}) for t in trials]
    folder = _folder(decl, root)
    folder.mkdir(exist_ok=True)
    partial = folder / "partial.jsonl"
    stamp = {"declaration_sha256": decl.sha256(), "code_sha256": code_sha256()}
    records = read_records(partial)
    if records and {k: records[0].get(k) for k in stamp} != stamp:
        partial.rename(partial.with_suffix(".jsonl.stale"))
        records = []
    if not records:
        append_record(partial, {**stamp, "started": _now()})
    done = {r["key"]: r for r in records[1:]}
    todo = [t for t in trials if _key(t) not in done]
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc=name, unit="trial",
                   file=sys.stderr)

    def on_result(i: int, result: TrialResult) -> None:
        record = _record(todo[i], result, decl.trace_every)
        append_record(partial, record)
        done[record["key"]] = record
        if bar is not None:
            bar.update(1)

    try:
        with _threads(THREADS):  # worker processes have one thread already (lrlib.jobs.worker_pool)
            if todo:
                run_trials(todo, workers=workers, executor=executor, batch=decl.batched,
                           max_batch=decl.max_batch, on_result=on_result)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    previous = sum(r["seconds"] for r in done.values())  # this run's and earlier runs' trials
    _write_results(decl, folder, [done[_key(t)] for t in trials], stamp,
                   device or str(trials[0].device), max(elapsed, 0.0), previous)
    partial.unlink()
    return folder


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _varying(decl: Declaration) -> list[str]:
    return [k.split(".", 1)[-1] for k in decl.grid] + ["seed"]


def _write_results(decl: Declaration, folder: Path, records: list[dict[str, Any]], stamp: dict[str, str],
                   device: str, elapsed: float, trial_seconds: float) -> None:
    varying = _varying(decl)
    rows, traces, curves = [], [], []
    for i, r in enumerate(records):
        config = r["config"]
        flat = {**config, **config.get("schedule_args", {})}
        row = {"trial": i, **{k: flat[k] for k in varying}, "config": json.dumps(config, sort_keys=True)}
        row.update({k: r[k] for k in ("val_loss", "val_accuracy", "test_loss", "test_accuracy",
                                       "final_train_loss")})
        row.update(diverged=r["diverged_at"] is not None,
                   diverged_at=-1 if r["diverged_at"] is None else r["diverged_at"], seconds=r["seconds"])
        rows.append(row)
        traces += [{"trial": i, "step": s, "loss": loss, "lr": lr}
                   for s, loss, lr in zip(r["trace_steps"], r["trace_loss"], r["trace_lr"])]
        curves += [{"trial": i, "step": s, "val_loss": v} for s, v in zip(r["val_steps"], r["val_losses"])]
    files = {"results.csv": pd.DataFrame(rows),
             "traces.csv": pd.DataFrame(traces, columns=["trial", "step", "loss", "lr"]),
             "val_curves.csv": pd.DataFrame(curves, columns=["trial", "step", "val_loss"])}
    hashes = {}
    for filename, frame in files.items():
        text = frame.to_csv(index=False, float_format="%.9g", lineterminator="\n")
        _atomic_write(folder / filename, text)
        hashes[filename] = hashlib.sha256(text.encode()).hexdigest()
    provenance = {"name": decl.name, "question": decl.question, **stamp, "code_modules": list(CODE_MODULES),
                  "torch_threads": THREADS,
                  **_versions(), "device": device, "machine": platform.machine(), "cpu_count": os.cpu_count(),
                  "date": _now(), "trials": len(records), "wall_seconds_last_run": round(elapsed, 1),
                  "trial_seconds_total": round(trial_seconds, 1), "files": hashes}
    _atomic_write(folder / "provenance.json", json.dumps(provenance, indent=2, sort_keys=True) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- reading and checking ----------------------------------------------------------------------------

@dataclass
class Experiment:
    """A stored experiment, checked: its declaration, provenance and data (pandas frames).

    ``results`` has one row per trial (the varying fields, then outcomes), ``traces`` the
    strided minibatch losses (``trial, step, loss, lr``), ``val_curves`` the validation
    losses along the way (``trial, step, val_loss``; empty unless the trials set ``eval_every``).
    """

    declaration: Declaration
    provenance: dict[str, Any]
    results: pd.DataFrame
    traces: pd.DataFrame
    val_curves: pd.DataFrame
    rerun: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.declaration.name

    def trace(self, trial: int) -> pd.DataFrame:
        """One trial's strided trace (``step``, ``loss``, ``lr``)."""
        return self.traces[self.traces.trial == trial].reset_index(drop=True)

    def best_val_loss(self) -> pd.Series:
        """Each trial's lowest validation loss along its curve (``val_curves``), indexed by trial:
        the loss early stopping would keep. NaN for a trial with no finite point."""
        lowest = self.val_curves.groupby("trial").val_loss.min()
        return lowest.reindex(self.results.trial)

    def steps_to(self, target: float) -> pd.Series:
        """Each trial's first evaluated step with validation loss at or below ``target``, indexed by
        trial; inf where it never got there (Shallue et al.'s steps to a result)."""
        reached = self.val_curves[self.val_curves.val_loss <= target].groupby("trial").step.min()
        return reached.reindex(self.results.trial).astype(float).fillna(np.inf)

    def source_note(self) -> str:
        """A sentence for under a figure: where its numbers come from and how to regenerate them."""
        p = self.provenance
        minutes = p["trial_seconds_total"] / 60
        return (f"Read from the stored experiment `{self.name}` ({p['trials']} trials, "
                f"{minutes:.0f} min of training on {p['device']} ({p['cpu_count']} cores), "
                f"run {p['date'][:10]}); regenerate with `{refresh_command(self.name)}`.")


def _read_csv_checked(folder: Path, filename: str, expected: str | None, name: str) -> pd.DataFrame:
    path = folder / filename
    if not path.is_file():
        raise ExperimentError(f"experiment {name!r}: {filename} is missing; run `{refresh_command(name)}`")
    data = path.read_bytes()
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        raise ExperimentError(f"experiment {name!r}: {filename} does not match the hash in provenance.json "
                              f"(edited, truncated or half-written); run `{refresh_command(name)}`")
    return pd.read_csv(io.BytesIO(data))


def read_experiment(name: str, root: str | Path | None = None) -> Experiment:
    """The stored experiment, with the cheap checks only: it exists, its declaration and the
    training code are those it ran with (else *stale*), and every data file matches its hash
    (else *tampered*). :func:`verify_experiment` adds the rerun check."""
    root = Path(root) if root is not None else experiments_dir()
    decl = declaration(name, root)
    folder = _folder(decl, root)
    prov_path = folder / "provenance.json"
    if not prov_path.is_file():
        raise ExperimentError(f"experiment {name!r} has no stored result; run `{refresh_command(name)}`")
    try:
        provenance = json.loads(prov_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ExperimentError(f"experiment {name!r}: provenance.json is not JSON; "
                              f"run `{refresh_command(name)}`") from None
    if provenance.get("declaration_sha256") != decl.sha256():
        raise ExperimentError(f"experiment {name!r} is stale: experiments/{name}.yaml changed since its "
                              f"results were stored; run `{refresh_command(name)}`")
    if provenance.get("code_sha256") != code_sha256():
        raise ExperimentError(f"experiment {name!r} is stale: the training code (lrlib's "
                              f"{', '.join(CODE_MODULES)}) changed since its results were stored; "
                              f"run `{refresh_command(name)}`")
    hashes = provenance.get("files", {})
    frames = [_read_csv_checked(folder, f, hashes.get(f), name) for f in DATA_FILES]
    if len(frames[0]) != len(decl.trials()):
        raise ExperimentError(f"experiment {name!r}: results.csv has {len(frames[0])} trials, the "
                              f"declaration {len(decl.trials())}; run `{refresh_command(name)}`")
    return Experiment(decl, provenance, *frames)


def verify_experiment(name: str, root: str | Path | None = None, *, trials: int | None = None,
                      steps: int | None = None, device: str | None = None) -> Experiment:
    """:func:`read_experiment`, then rerun a seeded sample of its trials' first steps and compare.

    The sample (``trials`` of them, default the declaration's ``check.trials``, chosen by a
    generator seeded with the experiment's name, so every build reruns the same ones) trains
    ``steps`` steps (default ``check.steps``) with the same schedule and batches, and its
    minibatch losses at the stored stride must equal the stored trace to
    :data:`RTOL`/:data:`ATOL` (the same device) or :data:`RTOL_OTHER_DEVICE` (another device),
    divergence included. It trains with the stored run's number of torch threads
    (:data:`THREADS`). A mismatch raises :class:`ExperimentError`.

    Returns:
        The experiment, with ``rerun`` holding the compared values.
    """
    experiment = read_experiment(name, root)
    decl = experiment.declaration
    all_trials = decl.trials()
    k = min(trials or decl.check["trials"], len(all_trials))
    n = steps or decl.check["steps"]
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    picked = sorted(rng.choice(len(all_trials), size=k, replace=False).tolist())
    stored_device = experiment.provenance.get("device", "cpu")
    rerun_device = device or ("cpu" if stored_device.startswith("cuda") and not _cuda() else stored_device)
    sample = [Trial.from_dict({**all_trials[i].to_dict(), "device": rerun_device}) for i in picked]
    with _threads(int(experiment.provenance.get("torch_threads") or THREADS)):
        results = run_trials(sample, batch=decl.batched, stop_after=n)
    rtol = RTOL if rerun_device.split(":")[0] == stored_device.split(":")[0] else RTOL_OTHER_DEVICE
    rows = []
    for i, result in zip(picked, results):
        stored = experiment.trace(i)
        stored = stored[stored.step < n]
        fresh = result.run.losses[stored.step.to_numpy()]
        want = stored.loss.to_numpy(dtype=float)
        same = np.allclose(fresh, want, rtol=rtol, atol=ATOL, equal_nan=True)
        rows.append({"trial": i, "steps": len(stored), "max_abs_diff": float(np.nanmax(np.abs(fresh - want)))
                     if np.isfinite(fresh).any() else 0.0, "reproduced": bool(same)})
        if not same:
            worst = int(np.nanargmax(np.abs(fresh - want))) if np.isfinite(fresh - want).any() else 0
            raise ExperimentError(
                f"experiment {name!r}: trial {i} does not reproduce its stored trace: step "
                f"{int(stored.step.iloc[worst])} gave loss {fresh[worst]:.6g}, stored {want[worst]:.6g} "
                f"(rtol {rtol:g}); the stored results are stale or were edited: "
                f"run `{refresh_command(name)}`")
    experiment.rerun = pd.DataFrame(rows)
    return experiment


@contextlib.contextmanager
def _threads(n: int):
    """Run the block with ``n`` torch threads, then put the old number back."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def load_experiment(name: str, root: str | Path | None = None, *, verify: bool = True) -> Experiment:
    """What a chapter calls: the stored experiment, checked (:func:`verify_experiment`), or an
    :class:`ExperimentError` that fails the build and says how to refresh it.

    Example (in a chapter)::

        exp = load_experiment("mnist1d_batch_size")
        best = exp.results.groupby(["batch_size", "lr"]).val_loss.median()
    """
    return verify_experiment(name, root) if verify else read_experiment(name, root)


def status(root: str | Path | None = None) -> pd.DataFrame:
    """One row per declaration: its trials and whether its stored result is ``fresh``, ``stale``,
    ``missing``, ``partial`` (a run was interrupted) or ``tampered`` (cheap checks only)."""
    rows = []
    root = Path(root) if root is not None else experiments_dir()
    for decl in declarations(root):
        state = "fresh"
        try:
            read_experiment(decl.name, root)
        except ExperimentError as error:
            text = str(error)
            state = ("stale" if "stale" in text else "missing" if "no stored result" in text
                     or "is missing" in text else "tampered")
        if (_folder(decl, root) / "partial.jsonl").exists():
            state = "partial"
        rows.append({"name": decl.name, "trials": len(decl.trials()), "state": state,
                     "question": decl.question})
    return pd.DataFrame(rows, columns=["name", "trials", "state", "question"])


# --- the command line (make experiments) ------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lrlib.experiments [NAME ...]``: run what is missing, partial or stale."""
    parser = argparse.ArgumentParser(prog="python -m lrlib.experiments", description=main.__doc__)
    parser.add_argument("names", nargs="*", help="experiments to run (default: every one not fresh)")
    parser.add_argument("--device", default=None, help="train on this device (cpu, cuda)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (one torch thread each)")
    parser.add_argument("--dask", default=None, help="the address of a Dask scheduler to run the trials on")
    parser.add_argument("--force", action="store_true", help="rerun even a fresh experiment")
    parser.add_argument("--list", action="store_true", help="list the experiments and their state")
    parser.add_argument("--verify", action="store_true", help="run the build's rerun check on each")
    args = parser.parse_args(argv)
    table = status()
    if args.list:
        print(table.to_string(index=False))
        return 0
    names = list(args.names) or table.name.tolist()
    for name in names:
        declaration(name)  # an unknown name or a bad declaration is refused before anything runs
    if args.verify:
        for name in names:
            exp = verify_experiment(name)
            print(f"{name}: reproduced {len(exp.rerun)} trials' first {exp.declaration.check['steps']} steps")
        return 0
    executor = None
    if args.dask:
        from distributed import Client

        executor = Client(args.dask).get_executor()
    states = dict(zip(table.name, table.state))
    timings = []
    for name in names:
        if states.get(name) == "fresh" and not args.force:
            print(f"{name}: fresh, nothing to run")
            continue
        if args.force:
            for filename in ("provenance.json",):
                path = experiments_dir() / name / filename
                if path.exists():
                    path.unlink()
        start = time.perf_counter()
        run_experiment(name, device=args.device, workers=args.workers, executor=executor)
        timings.append((name, time.perf_counter() - start))
        print(f"{name}: stored in experiments/{name}/ ({timings[-1][1] / 60:.1f} min)")
    if timings:
        print("\nexperiment                      minutes")
        for name, seconds in timings:
            print(f"{name:<30}  {seconds / 60:7.1f}")
    return 0


if __name__ == "__main__":  # pragma: no cover - the command line
    raise SystemExit(main())


__all__ = ["CODE_MODULES", "Declaration", "Experiment", "ExperimentError", "code_sha256", "declaration",
           "declarations", "experiments_dir", "load_experiment", "read_declaration", "read_experiment",
           "refresh_command", "run_experiment", "status", "verify_experiment"]
