"""``python -m training.publish``: the command lives in :mod:`training.eval.publish`; bad input is one line (``--debug``)."""
from training.cli import one_line_errors
from training.eval.publish import main as _main

main = one_line_errors("python -m training.publish")(_main)

if __name__ == "__main__":
    raise SystemExit(main())
