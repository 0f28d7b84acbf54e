"""One way to say what is wrong with a file the user wrote: every problem at once, each as ``key: problem``.

The configuration (``config``), the events catalogue (``events``) and the
simulator's scenario files (``simulator.scenario``) each check their own keys,
collect the problems in a list and raise a subclass of ``ValidationError``
naming the file, so a caller (``check-config``, the daemon's start) reports
any of them the same way and a user fixes a broken file in one go.
"""

from typing import List, Sequence


class ValidationError(Exception):
    """A file (or mapping) cannot be used; ``problems`` says what is wrong, each as ``key: problem``."""

    def __init__(self, problems: Sequence[str], source: str) -> None:
        self.problems: List[str] = list(problems)
        self.source = source
        super().__init__("%s: %s" % (source, "; ".join(self.problems)))

    def report(self) -> str:
        """The problems one per line, for a person fixing the file."""
        count = len(self.problems)
        lines = ["%s has %d problem%s:" % (self.source, count, "" if count == 1 else "s")]
        lines.extend("  - " + problem for problem in self.problems)
        return "\n".join(lines)

    def under(self, key: str) -> List[str]:
        """The problems as seen from a file that names this one in ``key`` (``events.catalogue_file``)."""
        return ["%s: %s: %s" % (key, self.source, problem) for problem in self.problems]
