"""Reader process of a parallel import: parses and validates a CSV, writes pickled batches."""

from __future__ import annotations

import sys

from newsletter.store.importer import reader_main

if __name__ == "__main__":
    sys.exit(reader_main(sys.argv[1:]))
