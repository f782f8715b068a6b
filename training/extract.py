"""``python -m training.extract``: the command lives in :mod:`training.ingest.extract`."""
from training.ingest.extract import main

if __name__ == "__main__":
    raise SystemExit(main())
