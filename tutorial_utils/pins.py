"""The pinned versions of both stacks, read from the lock files, and what Colab installs.

``requirements/`` holds, for each stack, a direct file (what is asked for, and why) and a
lock file (everything, frozen). An installed copy of the package carries the same files
as ``tutorial_utils.requirements``, so that a Colab notebook can install exactly the
pinned versions after installing the package alone:

- :func:`colab_packages`: the direct requirements of the stack's TensorFlow Federated part,
  at their locked versions, installed with pip's resolver (it keeps what Colab has when it
  fits, and brings what is missing);
- :func:`colab_no_deps_packages`: TFF and the packages whose declared pins would pull an
  old stack back, at their locked versions, installed with
  ``--no-deps --ignore-requires-python``.
"""

from __future__ import annotations

import re
import sys
from importlib import resources

from tutorial_utils import settings

STACKS = ("modern", "reference")
# What a requirement line asks for: a name, and an exact version when it has one.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(?:==\s*([^\s;#]+))?")
# In a direct file, this comment marks a package installed with --no-deps.
NO_DEPS_MARK = "# no-deps"
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


def read(stack: str, kind: str) -> str:
    """The text of ``requirements/{stack}-{kind}.txt`` (kind: ``direct`` or ``lock``)."""
    if stack not in STACKS or kind not in ("direct", "lock"):
        raise ValueError(f"no requirements file for stack {stack!r} and kind {kind!r}")
    name = f"{stack}-{kind}.txt"
    if settings.in_checkout():
        return (settings.project_root() / "requirements" / name).read_text()
    return resources.files("tutorial_utils.requirements").joinpath(name).read_text()


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
