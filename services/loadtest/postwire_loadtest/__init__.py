"""postwire-loadtest: open N GraphQL subscriptions, publish M posts open-loop, and account for
every (publish, subscriber) receipt. See cli.py for the command line and README.md for usage."""

__version__ = "0.1.0"
