"""Regenerate docs/errors.md: ``python tests/errors_table.py``.

Runs every bad-input row of tests/errors/ in this plain interpreter (no jaxtyping import hook: what a user
sees) and rewrites docs/errors.md from what it observed; ``--json`` prints the observations instead, which is
how tests/test_errors.py reads them. The rows, and how to add one, are described in tests/errors/__init__.py.
"""

import pathlib
import sys

if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # tests/, which holds the errors package
    import errors

    sys.exit(errors.main(sys.argv[1:]))
