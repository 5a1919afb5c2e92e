"""The one exception type whose message is meant for the user."""


class MynaError(Exception):
    """A failure the user can act on.

    The message is one sentence that says what was wrong and what to do; the CLI and the app
    show it as is, never with a traceback.
    """
