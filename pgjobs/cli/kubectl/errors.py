"""How the plugin ends: one-line errors and its exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a job Failed/Stopped, or an API call failed
EXIT_USAGE = 2  # argparse uses 2 as well
EXIT_TIMEOUT = 124  # as coreutils `timeout`


class PluginError(Exception):
    """A failure to report as one line, without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
