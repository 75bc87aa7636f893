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
  decides, and only phrases that deny relaying (qmail's ``553 sorry, that domain isn't in my list
  of allowed rcpthosts (#5.7.1)`` too) or, with 5.7.0, 5.7.1, 5.0.0 or no code, ask for
  authentication say yes. The code matters for those: Gmail's DMARC refusal ``5.7.26 ... The
  sender must authenticate with at least one of SPF or DKIM`` is about the sender domain's
  records at one receiving domain, not our relay login. SES's SMTP interface's ``554 Message
  rejected: Email address is not verified`` (an identity of our account, or a recipient in the
  sandbox) is our account's setup and says yes too.

:func:`blames_the_sender` reads a refusal of the envelope sender that comes at ``RCPT TO`` or
``DATA`` (Postfix with ``smtpd_delay_reject`` answers sender restrictions at RCPT: ``553 5.7.1
<noreply@acme.example>: Sender address rejected: not owned by user herald``): 5.1.7 or 5.1.8 (bad
sender mailbox or domain, RFC 3463) whatever the text, "sender address rejected" under any code,
and "sender" in a 5.7.1 (or codeless) reply. The SMTP adapter uses it for a tenant's own sender
only.

Only text the server wrote is read: the first line of the reply, before any ``said:`` (Postfix
quoting another server's answer, as in recipient callouts), with ``<...>`` (the addresses),
quoted strings and any word holding an ``@`` taken out, so a recipient named
``"relay access denied"@example.org`` cannot make its refusal read as ours.
"""

from __future__ import annotations

import re

__all__ = ["blames_our_relay", "blames_the_sender", "enhanced_code", "servers_own_words"]

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
    r"|\b(?:do|does|will)\s+not\s+relay\b|\bno\s+relaying\b|\brelay\s+denied\b"
    r"|\ballowed\s+rcpthosts\b"  # qmail
    r"|\bemail\s+address\s+is\s+not\s+verified\b",  # SES SMTP: an identity of our account
    re.IGNORECASE,
)
_AUTH_WANTED = re.compile(
    r"\bauthentication\s+(?:is\s+)?required\b|\bauth(?:entication)?\s+required\b"
    r"|\bmust\s+(?:first\s+)?authenticate\b|\bnot\s+authenticated\b|\bplease\s+authenticate\b",
    re.IGNORECASE,
)
# Codes under which "authenticate" can mean our login: not 5.7.20-5.7.26 (the sender domain's
# SPF/DKIM/DMARC at the receiver) nor any other specific security code.
_AUTH_CODES = frozenset({None, "5.0.0", "5.7.0", "5.7.1"})
# What the server did not write itself: addresses, quoted strings, and another server's answer.
_NOT_ITS_OWN = re.compile(r"<[^>]*>|\"[^\"]*\"|\S*@\S*")
_SENDER_CODES = frozenset({"5.1.7", "5.1.8"})  # bad sender mailbox / sender system address
_SENDER_REJECTED = re.compile(r"\bsender\s+(?:address\s+)?(?:rejected|refused|denied)\b", re.IGNORECASE)
_SENDER = re.compile(r"\bsender\b", re.IGNORECASE)
_QUOTING = re.compile(r"\bsaid:.*", re.IGNORECASE | re.DOTALL)


def enhanced_code(reply: str) -> str | None:
    """The RFC 3463 enhanced status code that opens ``reply`` (``"5.7.1"``), or None."""
    m = _ENHANCED.match(reply)
    return None if m is None else ".".join(str(int(part)) for part in m.groups())


def servers_own_words(reply: str) -> str:
    """The part of a reply the server wrote (the module doc): the first line, before ``said:``,
    without addresses and quoted strings."""
    first = reply.split("\n", 1)[0]
    return _NOT_ITS_OWN.sub(" ", _QUOTING.sub("", first))


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
    words = servers_own_words(reply)
    return bool(_RELAY_DENIED.search(words) or (code in _AUTH_CODES and _AUTH_WANTED.search(words)))


def blames_the_sender(reply: str) -> bool:
    """Whether a 5xx refusal with this reply text (without the 3-digit code) refuses the envelope
    sender rather than the recipient or the message: the rule of the module doc."""
    code = enhanced_code(reply)
    if code in _SENDER_CODES:
        return True
    words = servers_own_words(reply)
    return bool(_SENDER_REJECTED.search(words) or (code in (None, "5.7.1") and _SENDER.search(words)))
