"""``python -m hpc_taskology``: same as the ``taskology`` console script."""

import sys

from .cli import main

sys.exit(main())
