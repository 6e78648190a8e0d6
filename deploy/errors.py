"""The one exception the deploy runtime raises for problems a caller can fix."""


class DeployError(Exception):
    """A bad model file, a missing runtime or an input of the wrong shape/dtype; one-line message."""
