"""`python -m pgjobs.cli.kubectl`: the plugin without its console script."""

import sys

from pgjobs.cli.kubectl import main

sys.exit(main())
