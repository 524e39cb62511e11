"""`python -m imgcls ...` (and `torchrun -m imgcls train ...`) runs the command line."""

import sys

from imgcls.cli import main

sys.exit(main())
