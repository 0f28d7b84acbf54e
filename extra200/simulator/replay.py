"""Replay: answer console commands with recorded replies stored as files in a directory.

A command's file is named after the command with spaces as underscores
(``pwr.txt``, ``bat_1.txt``, ``info_1.txt``).  A file holding a whole
transcript (it contains ``$$``) is sent byte for byte; a file holding only the
payload is wrapped in the console's framing by the console.
"""

import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Recorded:
    """One recorded reply: its bytes, and whether they already carry echo, ``$$`` and prompt."""

    data: bytes
    framed: bool


class ReplayDirectory:
    """Looks commands up in ``directory``; re-reads files on every call, so they may be edited live."""

    def __init__(self, directory: str) -> None:
        if not os.path.isdir(directory):
            raise FileNotFoundError("replay directory %s does not exist" % directory)
        self.directory = directory

    @staticmethod
    def file_name(command: str) -> str:
        return "_".join(command.split()) + ".txt"

    def lookup(self, command: str) -> Optional[Recorded]:
        """The recorded reply to ``command``, or None when there is no file for it."""
        name = self.file_name(command)
        if not command.split() or os.sep in name or name.startswith("."):
            return None
        path = os.path.join(self.directory, name)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        return Recorded(data=data, framed=b"$$" in data)
