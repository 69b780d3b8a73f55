"""The exceptions a command ends with: `UserError` (bad input: one line, exit 2) and `Interrupted` (a signal
stopped a run: exit 130 or 143)."""

import signal


class UserError(Exception):
    """Bad input: `where` names the field, file or option, `fix` says what to do."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.line())

    def line(self) -> str:
        """The message on one line: control characters (from a user's input or a parser) are escaped, never raw."""
        head = f"{self.where}: {self.what}" if self.where else self.what
        text = f"{head}; {self.fix}" if self.fix else head
        return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while a run trained; the loop stopped after the step in flight."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)
