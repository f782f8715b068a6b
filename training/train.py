"""``python -m training.train``: the command lives in :mod:`training.loop.train`."""
from training.loop.train import main

if __name__ == "__main__":
    raise SystemExit(main())
