"""Credentials out of what we record and print: channel URLs, command lines, env var values.

A channel given as `https://user:pass@host/…` or with a conda token (`…/t/<token>/…`) lands in
a snapshot's argv and channels; a snapshot outlives the shell history it came from and gets
printed, exported and shared. Credentials are stripped (not masked) from URLs, so a recorded
channel still works: conda adds its own stored credentials for the host when it is used.
"""

from __future__ import annotations

import re

#: Env var / option names that look like credentials.
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "APIKEY",
                "PRIVATE_KEY", "ACCESS_KEY", "AUTH")
MASK = "<redacted>"

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_CONDA_TOKEN = re.compile(r"/t/[^/\s]+(?=/|$|\s)")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:[a-z_-]*(?:token|password|passwd|secret|api_?key|auth|signature)[a-z_-]*)=)"
    r"[^&\s#]*", re.IGNORECASE)
#: options whose next argument is a credential
_SECRET_OPTIONS = ("--password", "--token", "--api-key", "--auth")


def is_secret_name(name: str) -> bool:
    upper = name.upper().replace("-", "_")
    return any(word in upper for word in SECRET_WORDS)


def redact_url(text: str) -> str:
    """`text` with credentials in any URL in it removed: user:pass@, /t/<token>, ?token=…"""
    text = _USERINFO.sub(r"\g<scheme>", text)
    text = _CONDA_TOKEN.sub("", text)
    return _SECRET_QUERY.sub(rf"\g<key>{MASK}", text)


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with URL credentials stripped, and the values of secret-looking options
    and NAME=value assignments (`conda env config vars set API_TOKEN=…`) masked."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if arg in _SECRET_OPTIONS:
            hide_next = True
            out.append(arg)
            continue
        arg = redact_url(arg)
        name, eq, _ = arg.partition("=")
        if eq and "://" not in name and is_secret_name(name.lstrip("-")):
            arg = f"{name}={MASK}"
        out.append(arg)
    return out


def redact_variables(variables: dict[str, str]) -> dict[str, str]:
    """Env vars for printing to be shared: secret-looking ones masked, URL credentials out."""
    return {k: MASK if is_secret_name(k) else redact_url(v) for k, v in variables.items()}
