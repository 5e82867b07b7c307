"""A small office PBX as a Python dialplan switch (README: "Whole contexts in Python").

extensions.conf:   [office]
                   switch => Python/office

pbx_python.conf:   path = /path/to/contrib/switch
                   modules = office

- 2XXX: the office's phones (PJSIP endpoints named after the extension), ringing 20 s; busy or
  no answer goes to the extension's voicemail (VoiceMail(<exten>@office, b or u)).
- 9<number>: an outside call, the 9 stripped, over the PJSIP endpoint "trunk".
- 8000: the voicemail main menu for the caller's own mailbox.
Each body ends with Hangup(), as its twin does: a body that returns 0 after a failed Dial would
run off the end of the extension, and Asterisk's auto fallthrough would then play busy or
congestion for 10 s (DIALSTATUS BUSY, CHANUNAVAIL or CONGESTION) instead of hanging up with the
cause the callee gave (a provider's 404 would reach the caller as 503).
The same context written in extensions.conf is contrib/switch/extensions.conf.
"""
import pbx_python as px

office = px.switch("office")

RING_SECONDS = 20
TRUNK = "trunk"


@office.extension("_2XXX")
def internal(chan, exten):
    """An office phone; voicemail when it is busy or does not answer."""
    if chan.exec_app("Dial", f"PJSIP/{exten},{RING_SECONDS}"):
        return -1                             # the caller hung up
    status = chan.get_var("DIALSTATUS")
    if status == "BUSY":
        chan.exec_app("VoiceMail", f"{exten}@office,b")
    elif status != "ANSWER":
        chan.exec_app("VoiceMail", f"{exten}@office,u")
    return chan.exec_app("Hangup")


@office.extension("_9.")
def outside(chan, exten):
    """An outside number: strip the 9, dial it over the trunk."""
    chan.exec_app("Dial", f"PJSIP/{exten[1:]}@{TRUNK},60")
    return chan.exec_app("Hangup")


@office.extension("8000")
def voicemail_menu(chan, exten):
    """The caller's own mailbox."""
    chan.exec_app("VoiceMailMain", f"{chan.caller_num}@office")
    return chan.exec_app("Hangup")
