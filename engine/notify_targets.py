"""Where notifications go: Apprise URLs from the flags, a `--config` file and the environment, the one
way a URL is shown (`mask`), the categories a user picks, and one delivery to one URL (`Target.send`).

A URL carries tokens (a Slack webhook's path, a Telegram bot token, an e-mail password), so it lives
only in memory and in the environment of the processes gan-tui starts: never in a run folder, never
on a command line, never in full on screen or in an error. Nothing here imports numpy or torch (the
command line checks URLs before anything starts); Apprise is imported only when a URL is read.

Apprise does the sending, its timeouts and its retries: a socket connect and read timeout per try
(`cto`, `rto`, 4 s each by default) and `retry` more tries `wait` seconds apart (2 and 1 s here,
unless the URL names its own). Its own per-service deadline is turned off, so a send runs on the
caller's thread (engine/notify_sender.py's one thread) and leaves no worker thread behind.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.config import ConfigError

ENV_URLS = "GAN_TUI_NOTIFY"
"""Space-separated Apprise URLs: how a user keeps them out of shell history, and how gan-tui hands them
to the processes it starts (the trainer of `gan-tui` and `--detach`, a sweep's driver and trials)."""
ENV_ON = "GAN_TUI_NOTIFY_ON"
"""The categories as a comma list, like `--notify-on` (which wins when both are given)."""
CATEGORIES = ("finished", "failed", "alarms", "changes")
DEFAULT_ON = frozenset({"finished", "failed", "alarms"})
KINDS = ("info", "success", "warning", "failure")  # Apprise's notification types (a colour or an icon on most services)

_RETRIES = 2  # tries after the first, unless the URL says `retry=`
_RETRY_WAIT_S = 1.0  # between tries, unless the URL says `wait=`
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}$")
_PORT = re.compile(r"^\d{1,5}$")


@dataclass(frozen=True)
class Delivery:
    """How one message fared at one URL: delivered, or why not (in words that hold no part of the URL)."""

    ok: bool
    why: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Target:
    """One Apprise URL, read and ready to send to. Its repr and `str` are the masked form."""

    url: str = field(repr=False)
    masked: str
    _service: Any = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.masked

    def send(self, title: str, body: str, kind: str = "info") -> Delivery:
        """Deliver one message (blocking: at most (retry + 1) x the socket timeouts, plus the waits)."""
        import apprise

        bundle = apprise.Apprise(asset=self._service.asset)
        bundle.add(self._service)
        try:
            result = bundle.notify(body=body, title=title, notify_type=kind if kind in KINDS else "info",
                                   body_format="text")
        except Exception as exc:  # noqa: BLE001 - a plugin's own failure is a failed delivery, never a crash
            return Delivery(False, f"the sender failed ({type(exc).__name__})")
        return Delivery(True) if result else Delivery(False, _why(result, self._service))


def mask(url: str) -> str:
    """`json://127.0.0.1:8080` for `json://user:pass@127.0.0.1:8080/hook?token=x`: the scheme and the
    host, never a user, password, path or query. A host that is not a host name (a Telegram bot token,
    a Discord webhook id, an ntfy topic) shows only its first and last character."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not _SCHEME.match(scheme):
        return "(not a URL: it has no scheme://)"
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    host, port = netloc, ""
    if not netloc.startswith("["):
        host, _, port = netloc.partition(":")
    named = netloc.startswith("[") or host == "localhost" or ("." in host and re.fullmatch(r"[A-Za-z0-9.-]+", host))
    if named and (not port or _PORT.match(port)):
        return f"{scheme}://{netloc}"
    return f"{scheme}://{host[:1]}...{host[-1:]}" if len(host) > 2 else f"{scheme}://..."


def read_targets(urls: Iterable[str]) -> list[Target]:
    """Each URL read by Apprise; ConfigError (naming it masked, one line) for one it cannot read."""
    import apprise

    _quiet_apprise()
    asset = apprise.AppriseAsset(app_id="gan-tui", app_desc="gan-tui", service_timeout=0,
                                 default_service_retry=_RETRIES, default_service_wait=_RETRY_WAIT_S)
    targets = []
    for url in urls:
        service = apprise.Apprise.instantiate(url, asset=asset)
        if service is None:
            raise ConfigError("notify", mask(url), "Apprise cannot read this URL (see "
                              "https://github.com/caronc/apprise/wiki for the forms it takes; "
                              "`gan-tui notify-test URL` tries one)")
        targets.append(Target(url, mask(url), service))
    return targets


def parse_on(text: str) -> frozenset[str]:
    """`finished,alarms` -> the categories; `all` for every one; ConfigError naming the choices otherwise."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return frozenset(CATEGORIES)
    unknown = [name for name in names if name not in CATEGORIES]
    if unknown or not names:
        raise ConfigError("notify-on", unknown[0] if unknown else text,
                          f"use a comma list of {', '.join(CATEGORIES)} (or all)")
    return frozenset(names)


def collect_urls(*sources: Iterable[str]) -> tuple[str, ...]:
    """The URLs of every source in order, each once (a child gets them from the environment and from
    the same --config file)."""
    return tuple(dict.fromkeys(url for source in sources for url in source if url))


def env_urls(environ: dict[str, str] | Any) -> tuple[str, ...]:
    """The URLs of GAN_TUI_NOTIFY (space-separated) in `environ`."""
    return tuple(environ.get(ENV_URLS, "").split())


def env_on(environ: dict[str, str] | Any) -> frozenset[str]:
    """The categories of GAN_TUI_NOTIFY_ON in `environ`, else the default."""
    text = environ.get(ENV_ON, "").strip()
    try:
        return parse_on(text) if text else DEFAULT_ON
    except ConfigError as exc:
        raise ConfigError(ENV_ON, exc.value, exc.allowed) from None


def environment_targets() -> list[Target]:
    """The targets of GAN_TUI_NOTIFY in this process's environment (a sweep's driver)."""
    return readable_targets(env_urls(os.environ))


def readable_targets(urls: Iterable[str]) -> list[Target]:
    """The targets of URLs checked before (`gan-tui sweep` refused unreadable ones): one that Apprise
    cannot read here after all is said once on stderr and left out."""
    targets: list[Target] = []
    for url in urls:
        try:
            targets += read_targets([url])
        except ConfigError as exc:
            print(f"gan-tui: {exc}; left out", file=sys.stderr, flush=True)
    return targets


def environment_on() -> frozenset[str]:
    """The categories of GAN_TUI_NOTIFY_ON in this process's environment (the default if it is unreadable)."""
    try:
        return env_on(os.environ)
    except ConfigError as exc:
        print(f"gan-tui: {exc}; using the default", file=sys.stderr, flush=True)
        return DEFAULT_ON


def child_env(urls: Iterable[str], on: Iterable[str]) -> dict[str, str]:
    """The variables that hand the URLs and categories to a process gan-tui starts (empty: no URLs)."""
    urls = tuple(urls)
    if not urls:
        return {}
    return {ENV_URLS: " ".join(urls), ENV_ON: ",".join(c for c in CATEGORIES if c in set(on))}


def config_file_urls(value: Any) -> tuple[str, ...]:
    """The `notify` entry of a --config file: a list of URLs (or one URL); ConfigError otherwise,
    without the value (it may hold a token)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise ConfigError("notify", "(in the --config file)", "must be a list of Apprise URLs (strings)")
    return tuple(url.strip() for url in value if url.strip())


# ------------------------------------------------------------------ helpers
def _quiet_apprise() -> None:
    """Apprise's log lines can name hosts, paths and (at debug level) whole URLs: they must not reach
    a handler someone else set up (Ray's, a library's) and from there a log file. Our messages say
    what failed, in words of our own."""
    logging.getLogger("apprise").propagate = False


def _why(result: Any, service: Any) -> str:
    """Why a delivery failed, from Apprise's result, in words that hold no part of the URL."""
    attempts = [attempt for outcome in result for attempt in outcome.attempts]
    logs = " ".join(entry.message for attempt in attempts for entry in attempt.logs)
    codes = re.findall(r"error=(\d{3})", logs)
    read_s = float(getattr(service, "socket_read_timeout", 4.0) or 4.0)
    if codes:
        why = f"the service answered HTTP {codes[-1]}"
    elif attempts and any(a.status.name == "TIMEOUT" or a.elapsed >= 0.9 * read_s for a in attempts[-1:]):
        why = f"no answer within {read_s:g} s"
    else:
        why = "refused or unreachable"
    tries = len(attempts)
    return f"{why}; {tries} {'try' if tries == 1 else 'tries'}"
