"""Sphinx configuration of the memphis-sync documentation.

Builds offline: intersphinx has no inventories unless ``MEMPHIS_SYNC_DOCS_INTERSPHINX=1`` is set,
so ``sphinx-build -W`` never touches the network (CI and the test-suite build the docs).
"""

from __future__ import annotations

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # autodoc imports the package from this checkout


def _read_version() -> str:
    # Parsed, not imported: reading the version must not import the package (or its deps).
    with open(os.path.join(ROOT, "memphis_sync", "_version.py"), encoding="utf-8") as fh:
        match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", fh.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError("no __version__ in memphis_sync/_version.py")
    return match.group(1)


project = "memphis-sync"
author = "the memphis-sync authors"
copyright = "the memphis-sync authors; Apache-2.0"
release = _read_version()
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

# -- autodoc / napoleon -------------------------------------------------------------------------
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- intersphinx: offline unless asked for ------------------------------------------------------
intersphinx_mapping: dict = {}
if os.environ.get("MEMPHIS_SYNC_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping["python"] = ("https://docs.python.org/3", None)
intersphinx_disabled_reftypes = ["*"]
intersphinx_timeout = 5

# -- general ------------------------------------------------------------------------------------
master_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False
pygments_style = "sphinx"

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "A synchronous, thread-safe, blocking client for Memphis and NATS",
    "fixed_sidebar": True,
}
html_static_path: list = []


def _public_bases(app, name, obj, options, bases):  # type: ignore[no-untyped-def]
    """Show only public base classes: ``Connection`` is built from private mixins (one module
    per job), which are not part of the API."""
    bases[:] = [base for base in bases if not getattr(base, "__name__", "").startswith("_")] or [object]


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("autodoc-process-bases", _public_bases)
