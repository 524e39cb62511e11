"""The one exception type for a user's mistake.

The CLI catches it, prints its message on one line and exits with code 2, no traceback.
Messages name what is wrong, where, and how to fix it.
"""


class UserError(Exception):
    """A mistake the user can fix: a missing path, an unknown name, a bad value."""
