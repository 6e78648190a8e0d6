"""The exceptions the deploy runtime raises for problems a caller can fix (one-line messages)."""


class DeployError(Exception):
    """A bad model file, a missing runtime or an input of the wrong shape/dtype; one-line message."""


class UsageError(DeployError):
    """An option value that does not fit the model (``--top 20`` for 10 classes); the CLI exits 2."""


def one_line(message: object) -> str:
    """``message`` on one line: file names and library errors may carry newlines, a report line may not."""
    return " ".join(str(message).split("\n")).replace("\r", " ")
