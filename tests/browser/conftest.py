"""tests/browser/ needs Chromium and Playwright, which `make test` does not install: it is
collected only under `make test-browser` (which sets PAPERLIB_BROWSER_TEST=1 after installing
both, and which `.ci/run` runs after `make test`). A missing prerequisite there is a failure
with a message, never a skip."""
import os

import pytest

if os.environ.get("PAPERLIB_BROWSER_TEST") != "1":
    collect_ignore_glob = ["*.py"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each test's call report on its item (``item.rep_call``): the ``page`` fixture takes a
    screenshot when the test failed."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
