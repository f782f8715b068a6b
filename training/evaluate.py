"""``python -m training.evaluate``: the command lives in :mod:`training.eval.evaluate`."""
from training.eval.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
