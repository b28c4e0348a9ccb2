"""The language catalog: data (languages.toml), not code. Which runtimes exist,
how each compiles and runs (argv templates), and what is installed.

    >>> from stockade.runtimes import Catalog
    >>> Catalog.load().get("python3").run_command("a 'b c'")
    ['/usr/bin/python3.11', 'script.py', 'a', 'b c']
"""

from stockade.runtimes.catalog import BUILD_DIR, Catalog, Runtime, split_words

__all__ = ["BUILD_DIR", "Catalog", "Runtime", "split_words"]
