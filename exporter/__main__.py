"""`python -m exporter` is the `qualitygate` command."""

import sys

from exporter.cli.main import main

sys.exit(main())
