"""`python -m fcn` is the `fcn` command."""

import sys

from fcn.cli import main

sys.exit(main())
