"""The architecture's import rules, checked in fresh interpreters (what a module pulls in when imported)
and in the source (imports inside functions too):

- engine.music and engine.live.{midi, scheduler, clock, phrase} never import torch;
- nothing under engine.live, engine.model or engine.offline imports engine.train or engine.corpus;
- the command line imports its engine modules lazily: building it, and `sideman ports`, load no torch.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "engine"

TORCH_FREE = ["engine.music", "engine.live.midi", "engine.live.scheduler", "engine.live.clock", "engine.live.phrase"]
RUNTIME = ["engine.live", "engine.model", "engine.offline"]
TRAINING = ("engine.train", "engine.corpus")


def modules_under(name: str) -> list[str]:
    """`name` and, for a package, every module below it."""
    module = __import__(name, fromlist=["_"])
    if not hasattr(module, "__path__"):
        return [name]
    below = [m for m in pkgutil.walk_packages(module.__path__, prefix=name + ".")]
    # Python modules only (the native kernel's shared library sits in a package folder too)
    return [name] + [m.name for m in below if m.ispkg or m.module_finder.find_spec(m.name).origin.endswith(".py")]


def loaded_after_import(names: list[str]) -> set[str]:
    """sys.modules of a fresh interpreter after importing `names`."""
    code = ("import json, sys\n"
            f"for name in {names!r}:\n"
            "    __import__(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def culprits(names: list[str], bad) -> list[str]:
    """The modules of `names` that, imported alone, load a module for which `bad(module)` holds."""
    return [n for n in names if any(bad(m) for m in loaded_after_import([n]))]


def is_torch(module: str) -> bool:
    return module == "torch" or module.startswith("torch.")


def is_training(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TRAINING)


def imports_in_source(path: Path) -> set[str]:
    """Every module a source file names in an import statement, at any depth (lazy imports too)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def source_files(name: str) -> list[Path]:
    path = REPO / Path(*name.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def test_the_music_and_the_midi_timing_layers_never_import_torch():
    names = [m for root in TORCH_FREE for m in modules_under(root)]
    loaded = loaded_after_import(names)
    if any(is_torch(m) for m in loaded):
        pytest.fail(f"torch is imported by: {culprits(names, is_torch)}")
    for root in TORCH_FREE:
        for path in source_files(root):
            torch_imports = {m for m in imports_in_source(path) if is_torch(m)}
            assert not torch_imports, f"{path.relative_to(REPO)} imports {sorted(torch_imports)}"


def test_the_runtime_never_imports_training_or_corpus_code():
    names = [m for root in RUNTIME for m in modules_under(root)]
    loaded = loaded_after_import(names)
    if any(is_training(m) for m in loaded):
        pytest.fail(f"training or corpus code is imported by: {culprits(names, is_training)}")
    for root in RUNTIME:
        for path in source_files(root):
            bad = {m for m in imports_in_source(path) if is_training(m)}
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_command_line_imports_its_engine_modules_lazily():
    code = ("import json, sys\n"
            "from engine.cli import build_parser, main\n"
            "build_parser()\n"
            "before = sorted(sys.modules)\n"
            "code = main(['ports'])\n"
            "print(json.dumps([before, sorted(sys.modules), code]))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after, code = json.loads(result.stdout.strip().splitlines()[-1])
    assert not [m for m in before if is_torch(m)], "building the command line imported torch"
    assert not [m for m in after if is_torch(m)], "`sideman ports` imported torch"
    assert not [m for m in before if is_training(m) and m != "engine.train.arguments" and m != "engine.train"]


def test_no_import_circle_between_the_train_command_and_training():
    assert "engine.commands" not in {m.split(".")[0] + "." + m.split(".")[1] for m in
                                     imports_in_source(ENGINE / "train" / "train.py") if m.count(".") >= 1}
    lazily = imports_in_source(ENGINE / "commands" / "train.py")
    assert "engine.train.train" in lazily  # run() imports it when the command runs ...
    tree = ast.parse((ENGINE / "commands" / "train.py").read_text())
    top_level = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert "engine.train.train" not in top_level  # ... never at import time


def test_every_engine_package_has_a_docstring_saying_what_it_holds():
    for info in pkgutil.walk_packages(engine.__path__, prefix="engine."):
        if info.ispkg:
            module = __import__(info.name, fromlist=["_"])
            assert (module.__doc__ or "").strip(), f"{info.name} has no docstring"
