"""`gan-tui notify-test [URL ...]`: send a test message to each Apprise URL and say, per URL (masked),
whether it was delivered. Exit status 0 when every one was, 1 otherwise, 2 for a URL Apprise cannot
read (nothing is sent then). Without URLs it tests those of GAN_TUI_NOTIFY, so a token need not be
typed on a command line at all.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from engine.config import ConfigError
from engine.notify_targets import ENV_URLS, env_urls, read_targets
from tui_gan.options import Parser


def main(argv: Sequence[str]) -> int:
    """Parse, check every URL, send one test message to each; the exit status."""
    p = Parser(
        prog="gan-tui notify-test",
        description="Send a test message to each Apprise URL (the forms --notify takes) and say whether it was "
        "delivered.",
        epilog=f"Without URLs, the URLs of {ENV_URLS} (space-separated) are tested. A URL is only ever shown as "
        "its scheme and host.",
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="an Apprise URL: slack://..., ntfy://..., json://host:port/path, ...")
    args = p.parse_args(argv)
    urls = args.urls or list(env_urls(os.environ))
    if not urls:
        print(f"gan-tui notify-test: no URL given, and {ENV_URLS} is not set", file=sys.stderr)
        return 2
    try:
        targets = read_targets(urls)
    except ConfigError as exc:
        print(f"gan-tui notify-test: {exc}", file=sys.stderr)
        return 2
    from engine.notify import notify_test_text

    title, body = notify_test_text()
    delivered = 0
    for target in targets:
        print(f"{target.masked}: sending...", end="", flush=True)
        outcome = target.send(title, body, "info")
        delivered += bool(outcome)
        print(" delivered" if outcome else f" NOT delivered ({outcome.why})", flush=True)
    return 0 if delivered == len(targets) else 1
