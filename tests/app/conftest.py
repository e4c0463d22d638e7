"""Fixtures of the MONAI Label app tests (helpers in ``brats_server.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from brats_server import Server, copy_app, make_studies, start_server, stop_server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the server log to the report of a failed test that used the ``server`` fixture."""
    outcome = yield
    report = outcome.get_result()
    srv = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(srv, Server):
        report.sections.append(("monailabel server log (last 200 lines)", srv.log_tail()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The BraTS app served on synthetic studies with the tiny TransBTS on CPU; always shut down.

    A failing test gets the server log attached to its report (see ``pytest_runtest_makereport``).
    """
    root = tmp_path_factory.mktemp("e2e")
    source, studies = make_studies(root)
    app_dir = copy_app(root / "app")
    srv = start_server(app_dir, studies, source, root, {"models": "transbts", "tiny": "true", "device": "cpu"})
    try:
        yield srv
    finally:
        stop_server(srv)
