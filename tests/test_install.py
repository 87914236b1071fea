"""`pip install .` gives a working `fcn` command and library; the exact pins fit the declared ranges.

The slow tests build and install the package as a person would, from a copy of the sources into a clean
virtualenv (no system site packages, no editable install) that holds only its pinned dependencies, and run the
installed command and library as subprocesses from a folder outside the repository, so nothing can come from the
checkout or the development environment by accident. A dry run checks that pip resolves a fresh install.
"""

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fcn._quiet_tensorflow import is_startup_noise

PYPROJECT = REPO_ROOT / "pyproject.toml"
# What a wheel is built from: the project table, the readme it names, and the package.
BUILD_INPUTS = ("pyproject.toml", "README.md", "fcn")
# Resolving a fresh install reads every dependency's metadata from the index: seconds, minutes on a slow link.
INSTALL_TIMEOUT_S = 1200
COMMAND_TIMEOUT_S = 300


def _declared(extra: str | None = None) -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def _read_pins(path: Path) -> dict[str, str]:
    """{canonical name: version} of a requirements file and the files it includes with `-r`."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            pins.update(_read_pins(path.parent / line[2:].strip()))
        elif line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier  # exactly one, and it must be an exact pin
            assert specifier.operator == "==", f"{path.name}: {line!r} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


@pytest.mark.parametrize("extra", [None, "notebooks", "distributed", "cityscapes"])
def test_every_declared_dependency_is_pinned_inside_its_range(extra):
    pins = _read_pins(REPO_ROOT / "requirements-dev.txt")
    declared = _declared(extra)
    assert declared
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared in pyproject.toml but not pinned in requirements.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"pinned {name}=={pins[name]} is outside the declared range {requirement}")


def _imported_top_level_modules(package: Path) -> set[str]:
    modules = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"fcn"}


@pytest.mark.slow
def test_every_package_the_library_imports_is_a_declared_dependency():
    # The optional features import theirs inside the functions that need them (extras of pyproject.toml).
    declared = {canonicalize_name(r.name) for extra in (None, "distributed", "cityscapes") for r in _declared(extra)}
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(_imported_top_level_modules(REPO_ROOT / "fcn")):
        providers = {canonicalize_name(name) for name in distributions.get(module, [])}
        assert providers & declared, (f"fcn imports {module!r} (from {providers or 'no installed package'}), "
                                      "which pyproject.toml's dependencies do not declare")


# ----------------------------------------------------------------------------------------------------
# A real install into a clean virtualenv.

def _copy_build_inputs(target: Path) -> Path:
    # A copy keeps the build's own files (build/, fcn.egg-info) out of the checkout.
    target.mkdir(parents=True)
    for name in BUILD_INPUTS:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / name)
    return target


def _clean_environment() -> dict[str, str]:
    # Nothing that points Python at the checkout or hides TensorFlow's start-up lines the way fcn must.
    hidden = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TF_CPP_MIN_LOG_LEVEL", "FCN_TF_STARTUP_LOG"}
    return {key: value for key, value in os.environ.items() if key not in hidden}


def _run(args, cwd: Path, timeout: int = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=_clean_environment(), capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (f"{' '.join(map(str, args))} exited {result.returncode}\n"
                                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")
    return result


def _assert_no_startup_noise(result: subprocess.CompletedProcess) -> None:
    noise = [line for line in result.stderr.splitlines() if line.strip() and is_startup_noise(line)]
    assert not noise, f"{result.args[0]}: TensorFlow start-up lines on stderr:\n" + "\n".join(noise)


def _dependency_closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of every distribution `requirements` need, by the metadata installed beside this test."""
    names, todo = set(), list(requirements)
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # another platform's, or an extra nobody asked for
        name = canonicalize_name(requirement.name)
        if name not in names:
            names.add(name)
            todo.extend(Requirement(line) for line in importlib.metadata.requires(name) or [])
    return names


def _link_distributions(names: set[str], site_packages: Path) -> None:
    """Symlinks every file of these installed distributions into `site_packages`, at the same relative paths."""
    for name in names:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            if file.parts[0] == "..":
                continue  # console scripts in bin/: the tests run fcn's own, not its dependencies'
            link = site_packages / file
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(distribution.locate_file(file))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, source copy, work folder) after `pip install <copy of the repo>` into a fresh virtualenv.

    The dependencies are the pinned ones this test runs on, linked file by file into the new virtualenv rather
    than installed a second time (2.4 GB of copies filled a CI machine's disk): exactly the distributions that
    pyproject.toml's dependencies need, by their own metadata, and nothing else of the development environment.
    `pip check` then proves the installed wheel's requirements are met by them, and
    `test_a_fresh_install_resolves_from_the_package_index` that pip finds them for a machine with nothing.
    """
    root = tmp_path_factory.mktemp("install")
    source = _copy_build_inputs(root / "source")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=root)
    python = venv / "bin" / "python"
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              cwd=root).stdout.strip())
    _link_distributions(_dependency_closure(_declared()), site_packages)
    # A real (not editable) build and install of the package, less the bytecode (Python compiles what it imports).
    _run([python, "-m", "pip", "install", "--quiet", "--no-compile", "--no-deps", source], cwd=root,
         timeout=INSTALL_TIMEOUT_S)
    _run([python, "-m", "pip", "check"], cwd=root)
    work = root / "work"
    work.mkdir()
    yield venv, source, work
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_a_fresh_install_resolves_from_the_package_index(installed, tmp_path):
    # What `pip install .` does first on a machine with nothing installed: find a release of every dependency
    # inside the declared ranges (the newest ones, not this environment's pins). --dry-run reads their metadata
    # without installing them.
    venv, source, _ = installed
    report = tmp_path / "report.json"
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
          "--report", report, source], cwd=tmp_path, timeout=INSTALL_TIMEOUT_S)
    resolved = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    assert "fcn" in resolved
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in resolved, f"pip's resolution of a fresh install lacks {requirement}"
        assert requirement.specifier.contains(resolved[name], prereleases=True), (name, resolved[name])


@pytest.mark.slow
def test_installed_command_shows_its_help(installed):
    venv, _, work = installed
    for command in ([venv / "bin" / "fcn"], [venv / "bin" / "python", "-m", "fcn"]):
        result = _run([*command, "--help"], cwd=work)
        for subcommand in ("demo", "synth", "train", "predict", "evaluate"):
            assert subcommand in result.stdout
        _assert_no_startup_noise(result)


@pytest.mark.slow
def test_installed_command_writes_a_dataset_and_trains_on_it(installed):
    venv, _, work = installed
    result = _run([venv / "bin" / "fcn", "synth", "--dataset", "kitti_road", "--out-dir", work / "synthetic"],
                  cwd=work)
    _assert_no_startup_noise(result)
    data_road = work / "synthetic" / "data_road"
    for folder in ("training/image_2", "training/gt_image_2", "testing/image_2"):
        assert any((data_road / folder).glob("*.png")), folder
    # A training run uses the packages the library imports lazily (TensorBoard's summaries among them).
    result = _run([venv / "bin" / "fcn", "train", "--dataset", "kitti_road", "--data-dir", data_road,
                   "--run-dir", work / "run", "--fast", "--epochs", "1"], cwd=work)
    _assert_no_startup_noise(result)
    assert (work / "run" / "best.keras").is_file()


MODEL_SCRIPT = """
import importlib, importlib.util, json, pkgutil
from pathlib import Path
import numpy as np
import fcn, fcn.model
logits = fcn.model.build_fcn8(2, encoder="vgg16_mini", weights=None)(np.zeros((1, 64, 96, 3), "float32"))
modules = [m.name for m in pkgutil.walk_packages(fcn.__path__, "fcn.") if m.name != "fcn.__main__"]
for name in modules:
    importlib.import_module(name)
package = Path(fcn.__file__).parent
files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
# Development tools are installed beside the tests, never beside the package.
dev_tools = [name for name in ("pytest", "ruff", "jupyterlab") if importlib.util.find_spec(name) is not None]
print(json.dumps({"package": str(package), "shape": list(logits.shape), "modules": modules, "files": files,
                  "dev_tools": dev_tools}))
"""


@pytest.mark.slow
def test_installed_library_builds_a_model_and_has_every_module(installed):
    venv, source, work = installed
    result = _run([venv / "bin" / "python", "-c", MODEL_SCRIPT], cwd=work)
    _assert_no_startup_noise(result)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(venv), "fcn was imported from outside the virtualenv"
    assert report["dev_tools"] == [], "the virtualenv sees the development environment's packages"
    assert report["shape"] == [1, 64, 96, 2]
    assert "fcn.data.kitti_road" in report["modules"]
    package = source / "fcn"
    expected = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    missing = sorted(set(expected) - set(report["files"]))
    assert not missing, f"the installed package lacks {missing}"
