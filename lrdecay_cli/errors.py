"""The one exception type for user errors: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input: `where` names the field, file or option, `fix` says what to do."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.line())

    def line(self) -> str:
        head = f"{self.where}: {self.what}" if self.where else self.what
        return f"{head}; {self.fix}" if self.fix else head
