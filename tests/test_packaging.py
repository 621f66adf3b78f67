"""The set-up a newcomer relies on: pyproject, constraints, environment.yml, Makefile, CI, ignores."""

import re
import subprocess

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

from .conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _requirements(lines):
    return {Requirement(x).name.lower(): str(Requirement(x).specifier) for x in lines}


def pyproject_requirements():
    reqs = dict(_requirements(PROJECT["dependencies"]))
    for lines in PROJECT["optional-dependencies"].values():
        reqs.update(_requirements(x for x in lines if not x.startswith("lrlib")))
    return reqs


def test_extras_and_python():
    extras = PROJECT["optional-dependencies"]
    assert {"book", "grade", "test", "all"} <= set(extras)
    assert PROJECT["requires-python"] == ">=3.10"
    assert _requirements(extras["book"])["jupyter-book"] == "<2,>=1.0.4"
    core = _requirements(PROJECT["dependencies"])
    assert {"torch", "numpy", "matplotlib", "pandas", "tqdm", "scikit-learn"} <= set(core)
    assert not any("==" in spec for spec in core.values()), "users get ranges, not pins"
    assert extras["all"] == ["lrlib[book,grade,test,lab,cluster]"]


def test_environment_yml_names_the_same_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    named = _requirements(x for x in pip if not x.startswith("-"))
    assert named == pyproject_requirements()
    assert "--editable ." in pip
    assert "python=3.11" in env["dependencies"]


def test_constraints_pin_everything_we_install():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            assert str(req.specifier).startswith("=="), f"{line} is not a pin"
            pins[req.name.lower().replace("_", "-")] = str(req.specifier)
    assert pins["torch"] == "==2.13.0"
    missing = set(pyproject_requirements()) - set(pins)
    assert not missing, f"pyproject requirements without a tested pin: {missing}"
    for name, spec in pyproject_requirements().items():
        version = pins[name][2:]
        assert Requirement(f"{name}{spec}").specifier.contains(version, prereleases=True), (
            f"the pinned {name}=={version} falls outside pyproject's {spec}")


def test_makefile_targets_and_flags():
    text = (ROOT / "Makefile").read_text()
    for target in ("book", "test", "lab", "exercises", "clean"):
        assert re.search(rf"^{target}:", text, re.M), f"make {target} is missing"
    assert "-c constraints.txt" in text
    assert "jupyter-book build . --path-output $(BOOK_OUT) -W -n --keep-going" in text
    assert "-e '.[all]'" in text


def test_the_test_oracles_are_installed():
    """The muP tests skip without ``mup``; here the venv that `make venv` built must have it."""
    import importlib.util

    assert importlib.util.find_spec("mup") is not None, "run `make venv`: it installs mup (--no-deps)"
    assert re.search(r"^mup==", (ROOT / "constraints.txt").read_text(), re.M)


def test_ci_runs_make_test():
    run = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", run, re.M)


def test_toc_and_config():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["execute"]["timeout"] > 0 and config["execute"]["allow_errors"] is False
    assert {"amsmath", "dollarmath"} <= set(config["parse"]["myst_enable_extensions"])
    assert config["bibtex_bibfiles"] == ["references.bib"]
    assert (ROOT / "references.bib").exists()


def test_nothing_private_or_generated_is_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    bad = [f for f in files if re.search(
        r"(^|/)(_build|\.venv|submitted|autograded|feedback|\.ipynb_checkpoints)/|gradebook\.db$", f)]
    assert not bad
    ignored = (ROOT / ".gitignore").read_text().split()
    for entry in (".venv/", "_build/", "gradebook.db", "submitted/", "autograded/", "feedback/"):
        assert entry in ignored


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def test_the_student_package_holds_no_grading_code():
    """lrlib is what students import; the grader (nbgrader, kernels, the sandbox) lives in lrgrade."""
    sources = {p.name: p.read_text() for p in (ROOT / "lrlib").rglob("*.py")}
    for name, text in sources.items():
        imports = re.findall(r"^\s*(?:import|from)\s+(nbgrader|jupyter_client|lrgrade)\b", text, re.M)
        assert not imports, f"lrlib/{name} imports {imports}"
        assert "setpriv" not in text and "unshare" not in text, f"lrlib/{name} runs a sandbox"
    assert not (ROOT / "lrlib" / "autograde.py").exists() and not (ROOT / "lrlib" / "sandbox.py").exists()
    assert (ROOT / "lrgrade" / "__init__.py").exists()
    assert "lrgrade*" in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "-m lrgrade" in (ROOT / "Makefile").read_text()
