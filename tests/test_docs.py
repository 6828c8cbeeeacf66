"""Every docs page's Python examples run (tests/support/docs.py has the convention)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docs import has_companion_test, pages, run_page

PLAIN_PAGES = [page for page in pages() if not has_companion_test(page)]


@pytest.mark.parametrize("page", PLAIN_PAGES)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_page(page, tmp_path)
