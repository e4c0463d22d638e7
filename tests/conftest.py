"""Session-wide pytest settings shared by every test folder."""

from __future__ import annotations

import pytest

from robustlabel._warnings import filterwarnings_lines


def pytest_configure(config: pytest.Config) -> None:
    # pytest resets warning filters around each test; re-apply robustlabel's targeted
    # filters for known upstream noise (MONAI 1.4 sliding-window indexing, torch.jit.interface).
    for line in filterwarnings_lines():
        config.addinivalue_line("filterwarnings", line)
