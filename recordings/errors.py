class RecordingError(Exception):
    """A recording that cannot be read or written as asked; the message names file and fix."""
