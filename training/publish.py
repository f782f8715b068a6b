"""``python -m training.publish``: the command lives in :mod:`training.eval.publish`."""
from training.eval.publish import main

if __name__ == "__main__":
    raise SystemExit(main())
