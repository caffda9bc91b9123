"""README.md states facts the code can check: keep them true."""

from pathlib import Path

from crossbn.backends.table import markdown, readme_block

README = Path(__file__).resolve().parent.parent / "README.md"


def test_backend_table_is_the_generated_one():
    # regenerate with: crossbn backends --markdown
    assert readme_block(README.read_text(encoding="utf-8")) == markdown()
