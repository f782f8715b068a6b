"""``python -m training.import_sl``: the command lives in :mod:`training.ingest.import_sl`."""
from training.ingest.import_sl import main

if __name__ == "__main__":
    raise SystemExit(main())
