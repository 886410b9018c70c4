"""The pinned versions of both stacks, read from the lock files, and what Colab installs.

``requirements/`` holds, for each stack, a direct file (what is asked for, and why) and a
lock file (everything, frozen). The modern lock is Google Colab's default runtime
(``requirements/colab-default.txt``, Colab's published package list) plus TFF. An
installed copy of the package carries the same files as ``tutorial_utils.requirements``,
so that a notebook's Colab cell, after installing the package alone (``--no-deps``), asks
here what else to install:

- :func:`colab_has_tested_stack`: whether this runtime already has the TensorFlow and
  tf-keras of its stack's lock. Then the cell adds TFF's packages and replaces nothing;
  otherwise it says so, and that a restart will follow, before installing the stack;
- :func:`colab_packages`: the direct requirements of the stack's TensorFlow Federated part,
  at their locked versions, installed with pip's resolver (only on an untested runtime);
- :func:`colab_no_deps_packages`: TFF and the packages whose declared pins would pull an
  old stack back, at their locked versions, installed with
  ``--no-deps --ignore-requires-python`` (on every runtime: Colab has none of them).
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from importlib import resources

from tutorial_utils.plumbing import settings

STACKS = ("modern", "reference")
# Colab's published package lists (googlecolab/backend-info), copied in requirements/: the
# default runtime, which the modern lock follows, and the pinned past runtime 2026.07.
COLAB_RUNTIMES = {"default": "colab-default.txt", "2026.07": "colab-2026.07.txt"}
# What a requirement line asks for: a name, and an exact version when it has one.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(?:==\s*([^\s;#]+))?")
# In a direct file, this comment marks a package installed with --no-deps.
NO_DEPS_MARK = "# no-deps"
# The packages whose installed versions decide whether a runtime is one the tests ran.
TESTED_PACKAGES = ("tensorflow", "tf-keras")
# In a direct file, this comment starts the tools that only local runs need (Jupyter,
# the test runners): Colab has its own.
TOOLS_HEADING = "# Local tools (Colab has its own)."


def colab_stack(version: tuple[int, int] | None = None) -> str:
    """What Colab installs on a Python: the reference stack on 3.11 (TensorFlow 2.14 has
    wheels there, and it is the stack TFF 0.87 was released for), the modern one on
    3.12 and 3.13."""
    version = tuple(version or sys.version_info[:2])
    if version not in ((3, 11), (3, 12), (3, 13)):
        raise ValueError(
            f"Python {version[0]}.{version[1]} runs neither stack: use 3.11, 3.12 or 3.13"
        )
    return "reference" if version == (3, 11) else "modern"


def _requirements_file(name: str) -> str:
    if settings.in_checkout():
        return (settings.project_root() / "requirements" / name).read_text()
    return resources.files("tutorial_utils.requirements").joinpath(name).read_text()


def read(stack: str, kind: str) -> str:
    """The text of ``requirements/{stack}-{kind}.txt`` (kind: ``direct`` or ``lock``)."""
    if stack not in STACKS or kind not in ("direct", "lock"):
        raise ValueError(f"no requirements file for stack {stack!r} and kind {kind!r}")
    return _requirements_file(f"{stack}-{kind}.txt")


def _colab_lines(runtime: str) -> list[str]:
    """The ``name==version`` lines of a Colab runtime's list (:data:`COLAB_RUNTIMES`),
    without its direct references (``name @ URL``)."""
    if runtime not in COLAB_RUNTIMES:
        raise ValueError(f"no Colab runtime {runtime!r}: one of {', '.join(COLAB_RUNTIMES)}")
    lines = _requirements_file(COLAB_RUNTIMES[runtime]).splitlines()
    return [line for line in lines if "==" in line and " @ " not in line and line[0] != "#"]


def colab_runtime(runtime: str) -> dict[str, str]:
    """Every package of a Colab runtime's list and its version (pip too), names normalized."""
    return {
        normalize(name): version
        for name, version in (line.split("==", 1) for line in _colab_lines(runtime))
    }


def colab_constraints(runtime: str) -> str:
    """A Colab runtime's list as pip constraints: without pip itself, and without the
    direct references, which pip refuses as constraints."""
    kept = [line for line in _colab_lines(runtime) if normalize(line.split("==")[0]) != "pip"]
    return "\n".join(kept) + "\n"


def locked(stack: str) -> dict[str, str]:
    """Every package of the stack's lock file and its version, names normalized."""
    versions = {}
    for line in read(stack, "lock").splitlines():
        match = _REQUIREMENT.match(line)
        if match and not line.lstrip().startswith("#"):
            if match.group(2) is None:
                raise ValueError(f"requirements/{stack}-lock.txt: {line!r} has no exact version")
            versions[normalize(match.group(1))] = match.group(2)
    return versions


def normalize(name: str) -> str:
    """A distribution name as pip compares them: lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def direct(stack: str) -> tuple[list[str], list[str], list[str]]:
    """The stack's direct requirements as three lists of names: installed with the
    resolver, installed with --no-deps, and the local tools."""
    resolved, no_deps, tools = [], [], []
    in_tools = False
    for line in read(stack, "direct").splitlines():
        if line.strip() == TOOLS_HEADING:
            in_tools = True
        match = _REQUIREMENT.match(line)
        if match is None or line.lstrip().startswith("#"):
            continue
        name = normalize(match.group(1))
        if NO_DEPS_MARK in line:
            no_deps.append(name)
        else:
            (tools if in_tools else resolved).append(name)
    return resolved, no_deps, tools


def _pinned(stack: str, names: list[str]) -> str:
    versions = locked(stack)
    missing = [name for name in names if name not in versions]
    if missing:
        raise ValueError(f"requirements/{stack}-lock.txt has no pin for {', '.join(missing)}")
    return " ".join(f"{name}=={versions[name]}" for name in names)


def colab_packages(version: tuple[int, int] | None = None) -> str:
    """The pins Colab installs with pip's resolver, for this Python's stack."""
    stack = colab_stack(version)
    return _pinned(stack, direct(stack)[0])


def colab_no_deps_packages(version: tuple[int, int] | None = None) -> str:
    """The pins Colab installs with ``--no-deps --ignore-requires-python``."""
    stack = colab_stack(version)
    return _pinned(stack, direct(stack)[1])


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def untested_packages(version: tuple[int, int] | None = None) -> dict[str, tuple]:
    """Each of :data:`TESTED_PACKAGES` that this Python has at another version than its
    stack's lock (or lacks, or has though the lock has none), as ``name: (installed,
    locked)``; empty on a runtime the tests ran."""
    versions = locked(colab_stack(version))
    found = {}
    for name in TESTED_PACKAGES:
        have, want = _installed_version(name), versions.get(name)
        if have != want:
            found[name] = (have, want)
    return found


def colab_has_tested_stack(version: tuple[int, int] | None = None) -> bool:
    """Whether this runtime has the TensorFlow and tf-keras this tutorial is tested with.

    Prints what the Colab cell does next: add TensorFlow Federated only (True), or install
    the tested stack, which replaces packages this runtime has already loaded, so that a
    restart follows (False).
    """
    stack = colab_stack(version)
    differ = untested_packages(version)
    if not differ:
        have = ", ".join(f"{name} {_installed_version(name)}" for name in TESTED_PACKAGES)
        print(
            f"This runtime has {have}, the versions this tutorial is tested with: adding "
            "TensorFlow Federated and its privacy packages; nothing installed is replaced."
        )
        return True
    described = "; ".join(
        f"{name} {have or 'not installed'} (tested: {want or 'none'})"
        for name, (have, want) in differ.items()
    )
    print(
        f"This runtime has {described}. Installing the {stack} stack the tutorial is tested "
        "with: pip replaces some of this runtime's packages, and those already loaded "
        "(NumPy at least) take effect only after a restart. When pip has finished, restart "
        "the session (Colab offers a button; or Runtime > Restart session), then run the "
        "notebook again from the top: this cell will then find the tested versions."
    )
    return False
