"""`python -m imgcls.cli ...`, the same as `python -m imgcls ...`."""

import sys

from imgcls.cli import main

sys.exit(main())
