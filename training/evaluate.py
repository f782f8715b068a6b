"""``python -m training.evaluate``: the command lives in :mod:`training.eval.evaluate`; bad input is one line (``--debug``)."""
from training.cli import one_line_errors
from training.eval.evaluate import main as _main

main = one_line_errors("python -m training.evaluate")(_main)

if __name__ == "__main__":
    raise SystemExit(main())
