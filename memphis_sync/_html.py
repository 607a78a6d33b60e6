"""Small HTML tables for the notebook reprs (``_repr_html_``) of the objects people inspect in
Jupyter: connections, stations, producers, consumers, message batches. Everything shown is
escaped; nothing secret is passed in."""

from __future__ import annotations

import html
from typing import Any, Iterable, List, Sequence, Tuple

__all__ = ["fields_table", "rows_table"]

_STYLE = "border-collapse:collapse;font-family:monospace;font-size:90%"
_CELL = "border:1px solid #ccc;padding:2px 6px;text-align:left"


def _cell(tag: str, value: Any) -> str:
    return f'<{tag} style="{_CELL}">{html.escape(str(value))}</{tag}>'


def fields_table(title: str, fields: Iterable[Tuple[str, Any]]) -> str:
    """A two-column table: a title row, then one ``name | value`` row per field."""
    rows = "".join(f"<tr>{_cell('th', name)}{_cell('td', value)}</tr>" for name, value in fields)
    return f'<table style="{_STYLE}"><tr><th colspan="2" style="{_CELL}">{html.escape(title)}</th></tr>{rows}</table>'


def rows_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table with a caption, a header row and the given rows."""
    head = "".join(_cell("th", h) for h in headers)
    body: List[str] = ["<tr>" + "".join(_cell("td", v) for v in row) + "</tr>" for row in rows]
    return f'<table style="{_STYLE}"><caption>{html.escape(title)}</caption><tr>{head}</tr>{"".join(body)}</table>'
