"""`python -m exporter` is the `qualitygate` command."""

import sys

from exporter.cli import main

sys.exit(main())
