"""Whether an SMTP refusal blames our relay setup rather than the recipient, from the reply. Pure.

A server that will not relay for us, or wants us authenticated first, says so at RCPT TO with a
5xx: Postfix ``554 5.7.1 <a@b>: Relay access denied``, Sendmail ``550 5.7.1 <a@b>... Relaying
denied``, Exim ``550 relay not permitted``, Exchange ``550 5.7.54 Unable to relay recipient in
non-accepted domain``, Microsoft 365 ``550 5.7.64 TenantAttribution; Relay Access Denied``, Gmail
``550 5.7.0 Mail relay denied``. Every recipient would be refused alike, so it is our
configuration (the reply code alone says "mailbox unavailable").

The rule, enhanced status code (RFC 3463, at the start of the text) first:

* a code that names our setup (:data:`_OURS`: 5.7.8 credentials invalid, 5.7.54/5.7.64 relay
  denied, 5.7.57 not authenticated...) decides yes, whatever the text;
* a code of another subject (5.1.1 bad mailbox, 5.2.2 mailbox full, 5.4.x routing...) decides no,
  whatever the text: Postfix says ``5.1.1 ... User unknown in relay recipient table``, which is
  the recipient's fault although it says "relay";
* 5.7.x without a specific meaning (5.7.1 "delivery not authorized" covers relaying, spam and
  the recipient's own policy alike), X.0.0 (undefined) or no enhanced code at all: the text
  decides, and only phrases that deny relaying or ask for authentication say yes.
"""

from __future__ import annotations

import re

__all__ = ["blames_our_relay", "enhanced_code"]

# Enhanced codes that are about the client's (our) authentication or relay permission.
_OURS = frozenset(
    {
        "5.7.8",  # authentication credentials invalid (RFC 4954)
        "5.7.9",  # authentication mechanism too weak (RFC 4954)
        "5.7.10",  # encryption needed (RFC 5248)
        "5.7.11",  # encryption required for requested authentication mechanism (RFC 4954)
        "5.7.14",  # trust relationship required (RFC 7293)
        "5.7.54",  # Exchange: unable to relay recipient in non-accepted domain
        "5.7.57",  # Microsoft 365: client was not authenticated to send mail
        "5.7.64",  # Microsoft 365: TenantAttribution, relay access denied
    }
)
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")
_RELAY_DENIED = re.compile(
    r"\brelay(?:ing)?\s+(?:access\s+|is\s+|was\s+)?"
    r"(?:denied|not\s+(?:permitted|allowed|authori[sz]ed)|prohibited|refused|disallowed|forbidden)"
    r"|\b(?:unable|not\s+(?:permitted|allowed|authori[sz]ed))\s+to\s+relay\b"
    r"|\b(?:do|does|will)\s+not\s+relay\b|\bno\s+relaying\b|\brelay\s+denied\b",
    re.IGNORECASE,
)
_AUTH_WANTED = re.compile(
    r"\bauthentication\s+(?:is\s+)?required\b|\bauth(?:entication)?\s+required\b"
    r"|\bmust\s+(?:first\s+)?authenticate\b|\bnot\s+authenticated\b|\bplease\s+authenticate\b",
    re.IGNORECASE,
)


def enhanced_code(reply: str) -> str | None:
    """The RFC 3463 enhanced status code that opens ``reply`` (``"5.7.1"``), or None."""
    m = _ENHANCED.match(reply)
    return None if m is None else ".".join(str(int(part)) for part in m.groups())


def blames_our_relay(reply: str) -> bool:
    """Whether a 5xx refusal with this reply text (without the 3-digit code) is the server
    refusing to relay for us or asking us to authenticate: the rule of the module doc."""
    code = enhanced_code(reply)
    if code in _OURS:
        return True
    if code is not None:
        _, subject, detail = code.split(".")
        if subject != "7" and not (subject == "0" and detail == "0"):
            return False  # another subject (addressing, mailbox, routing...): not about us
    return bool(_RELAY_DENIED.search(reply) or _AUTH_WANTED.search(reply))
