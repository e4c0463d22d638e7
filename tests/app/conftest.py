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
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    # ``server`` (test_e2e.py), or a fixture whose value starts with a Server (test_safety.py)
    for name in ("server", "safe_server", "auth_server"):
        srv = funcargs.get(name)
        srv = srv[0] if isinstance(srv, tuple) and srv else srv
        if isinstance(srv, Server):
            report.sections.append((f"monailabel server log of {name} (last 200 lines)", srv.log_tail()))


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
