"""URLs without their credentials: the one scrubber for every URL clinfo shows, logs or stores.

A URL carries credentials in two places: its user info (``https://user:token@host``,
``postgresql://user:password@host/db``) and its query (``?api_key=...``, libpq's ``?password=``).
:func:`scrub_url` takes them out, :func:`url_secrets` lists them (for :func:`clinfo.redact.redact`).

In an HTTP(S) URL the whole user info is a credential (basic auth, or a token in the user's
place), so all of it goes; in any other URL, a database's, the user name is a role and stays,
only the password goes. Query parameters whose names look secret (:func:`is_secret_param`) go.
Everything else is kept exactly as written, and a text that is not a URL comes back unchanged.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, unquote_plus

__all__ = ["SECRET_PARAMS", "is_secret_param", "scrub_url", "url_secrets"]

# query parameters that hold credentials, by name (after lower-casing, "-" read as "_")
SECRET_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "key",
        "passwd",
        "password",
        "pwd",
        "secret",
        "sig",
        "signature",
        "sslpassword",
        "token",
    }
)
_SECRET_ENDINGS = ("_key", "_token", "_secret", "password")
_USERINFO_IS_SECRET = frozenset({"http", "https", "ws", "wss"})


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name holds a credential (``api_key``, ``X-Auth-Token``...)."""
    normal = unquote_plus(name).strip().lower().replace("-", "_")
    return normal in SECRET_PARAMS or normal.endswith(_SECRET_ENDINGS)


def _split(url: str) -> tuple[str, str | None, str, str, str | None, str | None] | None:
    """``(scheme, userinfo, host[:port], path, query, fragment)`` of ``url`` as written, or None
    for text that is not ``scheme://...``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return None
    rest, hashmark, fragment = rest.partition("#")
    rest, qmark, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    return (
        scheme,
        userinfo if at else None,
        host,
        slash + path,
        query if qmark else None,
        fragment if hashmark else None,
    )


def scrub_url(url: str, *, query: bool = True) -> str:
    """``url`` without its credentials (see the module's docstring). ``query=False`` also drops
    the whole query and fragment: scheme, host and path only."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, userinfo, host, path, params, fragment = parts
    authority = host
    if userinfo is not None and scheme.lower() not in _USERINFO_IS_SECRET:
        user = userinfo.partition(":")[0]
        authority = f"{user}@{host}" if user else host
    text = f"{scheme}://{authority}{path}"
    if not query:
        return text
    if params is not None:
        # piece by piece, so what is kept stays exactly as written
        kept = "&".join(p for p in params.split("&") if not is_secret_param(p.partition("=")[0]))
        text += f"?{kept}" if kept or not params else ""
    return text + (f"#{fragment}" if fragment is not None else "")


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials in ``url`` (decoded, as a server or a driver may echo them): its password,
    an HTTP URL's lone user name (a token), the values of its secret query parameters."""
    parts = _split(url)
    if parts is None:
        return ()
    scheme, userinfo, _, _, params, _ = parts
    found: list[str] = []
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        if colon:
            found.append(unquote(password))
        elif scheme.lower() in _USERINFO_IS_SECRET:
            found.append(unquote(user))
    for name, value in parse_qsl(params or "", keep_blank_values=True):
        if value and is_secret_param(name):
            found.append(value)
    return tuple(v for v in found if v)
