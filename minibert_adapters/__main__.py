"""`python -m minibert_adapters ...` is the `minibert` command."""

import sys

from minibert_adapters.cli import main

sys.exit(main())
