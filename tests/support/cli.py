"""`rally` run in the test's own thread, its output captured."""

from __future__ import annotations

import contextlib
import io

from workers.cli.main import main


def rally(*argv: str) -> tuple[int, str, str]:
    """The CLI in this thread (it runs its own event loop): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()
