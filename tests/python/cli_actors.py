"""Actor classes for tests/python/test_cli.py (`pulsing actor cli_actors.Echo`)."""

import pulsing as pul


@pul.remote
class Echo:
    """Answers ping with its argument and hello with the constructor's greeting."""

    def __init__(self, greeting: str = "hi") -> None:
        self.greeting = greeting

    def ping(self, x=None):
        return x

    def hello(self) -> str:
        return self.greeting


class Plain:
    """A plain class: the CLI makes it an actor class."""

    def ping(self, x=None):
        return x
