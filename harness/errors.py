"""Errors meant for users: one clear sentence naming the bad thing and the fix."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing data, wrong saved model).

    The CLI prints it as one line and exits with status 2, before any output file is written.
    """


class DataError(UserError):
    """A dataset root, layout or file is missing or malformed."""


class ConfigError(UserError):
    """A config key is unknown, has the wrong type, or an out-of-range value."""


class CheckpointError(UserError):
    """A resume checkpoint or a saved model cannot be used (unreadable, or another architecture,
    class count or dataset)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run can resume from. The CLI prints
    it as one line and exits with status 130 (a KeyboardInterrupt, so nothing catches it as an
    ordinary error)."""
