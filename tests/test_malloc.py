"""paperlib._malloc: the allocator thresholds ``import paperlib`` sets, and the opt-out."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import paperlib._malloc as pm


def _applied_in_child(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != pm.ENV}
    if value is not None:
        env[pm.ENV] = value
    return subprocess.run([sys.executable, "-c", "import paperlib, paperlib._malloc as m; print(m.applied())"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_import_sets_the_thresholds_unless_told_not_to():
    tuned = _applied_in_child(None)
    assert tuned.returncode == 0 and tuned.stdout.strip() == "True", tuned.stderr
    kept = _applied_in_child("default")
    assert kept.returncode == 0 and kept.stdout.strip() == "False", kept.stderr


def test_a_bad_setting_is_one_clear_error_naming_the_variable():
    bad = _applied_in_child("fast")
    assert bad.returncode != 0
    assert "PAPERLIB_MALLOC: expected 'tuned' or 'default', got 'fast'" in bad.stderr


def test_tune_is_idempotent():
    first = pm.applied()
    assert first is not None  # import paperlib called it
    assert pm.tune() is first and pm.applied() is first
