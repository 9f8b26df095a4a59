"""Specific exceptions whose messages name the file, row or key and say what to do."""


class CxrError(Exception):
    """Base class: a problem a user can fix (bad data, bad config), not a bug."""


class ConfigError(CxrError):
    """A setting in config.yaml is invalid; the message names the key."""


class DataError(CxrError):
    """Input data cannot be used as a whole (not one bad row: those are exclusions)."""


class DownloadError(CxrError):
    """A download failed or its checksum did not match."""
