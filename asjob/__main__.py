"""``python -m asjob``: the ``asjob`` command, for when the console script is not on PATH."""

import sys

from .cli import main

# The guard matters: a fork server started by this command loads its __main__ for pickling.
if __name__ == "__main__":
    sys.exit(main())
