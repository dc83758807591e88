"""One logging set-up: -v works in every entry point, logs and errors go to stderr, results to stdout."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from realtime.cli import build_subcommand_parser
from realtime.logs import count_verbose


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_live.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_count_verbose():
    assert count_verbose(["-v"]) == 1 and count_verbose(["train", "-vv", "--verbose"]) == 3
    assert count_verbose(["--source", "x.mp4"]) == 0 and count_verbose(["--", "-v"]) == 0


def test_every_sub_command_takes_v():
    parser = build_subcommand_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"train", "evaluate", "extract", "ensemble", "build-engine", "calibrate"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert any("-v" in a.option_strings for a in p._actions), name


def test_bench_scripts_set_up_logging_with_v():
    for script in sorted((REPO / "bench").glob("*.py")):
        calls = {n.func.id for n in ast.walk(ast.parse(script.read_text()))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert {"add_verbose_argument", "setup_logging"} <= calls, script.name


@pytest.fixture
def one_class(tmp_path: Path) -> Path:
    root = tmp_path / "npz"
    for i in range(2):
        (root / "squat").mkdir(parents=True, exist_ok=True)
        np.savez(root / "squat" / f"p{i}__1.npz", reconstruction=np.ones((40, 17, 3), np.float32), fps=30.0)
    return root


def test_sub_command_logs_to_stderr_with_v_and_keeps_stdout_for_results(one_class):
    argv = ["train", "--data", f"npz={one_class}", "--no-synthetic-other"]
    quiet = _run(*argv)
    loud = _run(*argv, "-v")
    for proc in (quiet, loud):
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "two classes" in proc.stderr
    assert "sequences from" not in quiet.stderr  # INFO only with -v
    assert "sequences from" in loud.stderr and "INFO" in loud.stderr


def test_python_m_train_takes_v_too(one_class):
    proc = subprocess.run([sys.executable, "-m", "realtime.training.train", "train", "--data", f"npz={one_class}",
                           "--no-synthetic-other", "-vv"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "DEBUG" in proc.stderr or "INFO" in proc.stderr
