"""The docs' python snippets run as written and end in an assertion.

Snippets that need a running server are run by the module that starts one:
``docs/serving.md`` by ``test_serving_api.py``.
"""

from __future__ import annotations

import pytest

from docs_snippets import all_snippets, ends_in_assertion, run_snippet

SNIPPETS = all_snippets()
NEEDS_A_SERVER = {name for name in SNIPPETS if name.startswith("docs/serving.md")}


def test_the_docs_have_snippets_and_each_ends_in_an_assertion():
    assert NEEDS_A_SERVER and set(SNIPPETS) - NEEDS_A_SERVER
    assert [name for name, code in SNIPPETS.items() if not ends_in_assertion(code)] == []


@pytest.mark.parametrize("name", sorted(set(SNIPPETS) - NEEDS_A_SERVER))
def test_doc_snippet_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_snippet(SNIPPETS[name])
