"""The one exception the data layer raises: its message names the problem and the fix."""


class DataError(Exception):
    """CIFAR-10 data missing, corrupt or malformed. ``str(err)`` is meant for the user, as is."""
