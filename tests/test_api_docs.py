"""docs/api.md is generated from the registry (tools/gen_api_docs.py): the committed page must be current, cover
every loss and every public name, and the README must link it."""

import importlib.util
from pathlib import Path

import fusedloss as fl
from fusedloss._spec import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def _generated():
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "tools" / "gen_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate()


def test_committed_api_page_is_current():
    assert (ROOT / "docs" / "api.md").read_text() == _generated(), "run: python tools/gen_api_docs.py"


def test_api_page_covers_the_public_names():
    text = (ROOT / "docs" / "api.md").read_text()
    for name in fl.__all__:
        if name in REGISTRY:
            assert f"\n### {name}\n" in text and f"fl.{name}(" in text
            for p in REGISTRY[name].params:
                assert f"| `{p.name}` |" in text
        else:
            assert f"### `fl.{name}" in text


def test_readme_links_the_api_page():
    assert "(docs/api.md)" in (ROOT / "README.md").read_text()


def catalogue_row(spec) -> str:
    """A loss's row in the README's catalogue, from the registry (``|`` escaped for Markdown)."""
    defaults = ", ".join(f"`{p.name}={p.default!r}`" for p in spec.params) or "-"
    cells = (f"`{spec.name}`", defaults, spec.summary.replace("|", "\\|"), spec.formula.replace("|", "\\|"))
    return "| " + " | ".join(cells) + " |"


def test_readme_catalogue_matches_the_registry():
    """Each loss's row in the README's catalogue is the registry's (parameters, summary and formula), so the
    front page cannot drift from the definitions."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for name, spec in REGISTRY.items():
        if spec.kind == "sequence" or not spec.builtin:
            continue  # its own section, with the call signature; a user's loss defined by another test
        row = catalogue_row(spec)
        written = [line for line in lines if line.startswith(f"| `{name}` |")]
        assert written == [row], f"README catalogue row of {name} differs from _spec.py; it should read:\n{row}"
