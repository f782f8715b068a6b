"""``python -m training.prepare``: the command lives in :mod:`training.ingest.prepare`."""
from training.ingest.prepare import main

if __name__ == "__main__":
    raise SystemExit(main())
