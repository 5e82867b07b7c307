"""A small office PBX as a Python dialplan switch (README: "Whole contexts in Python").

extensions.conf:   [office]
                   switch => Python/office

pbx_python.conf:   path = /path/to/contrib/switch
                   modules = office

- 2XXX: the office's phones (PJSIP endpoints named after the extension), ringing 20 s; busy or
  no answer goes to the extension's voicemail (VoiceMail(<exten>@office, b or u)).
- 9<number>: an outside call, the 9 stripped, over the PJSIP endpoint "trunk".
- 8000: the voicemail main menu for the caller's own mailbox.
The same context written in extensions.conf is contrib/switch/extensions.conf.
"""
import pbx_python as px

office = px.switch("office")

RING_SECONDS = 20
TRUNK = "trunk"


@office.extension("_2XXX")
def internal(chan, exten):
    """An office phone; voicemail when it is busy or does not answer."""
    res = chan.exec_app("Dial", f"PJSIP/{exten},{RING_SECONDS}")
    if res:                                   # the caller hung up
        return res
    status = chan.get_var("DIALSTATUS")
    if status == "BUSY":
        return chan.exec_app("VoiceMail", f"{exten}@office,b")
    if status in ("NOANSWER", "CHANUNAVAIL", "CONGESTION"):
        return chan.exec_app("VoiceMail", f"{exten}@office,u")
    return 0


@office.extension("_9.")
def outside(chan, exten):
    """An outside number: strip the 9, dial it over the trunk."""
    return chan.exec_app("Dial", f"PJSIP/{exten[1:]}@{TRUNK},60")


@office.extension("8000")
def voicemail_menu(chan, exten):
    """The caller's own mailbox."""
    return chan.exec_app("VoiceMailMain", f"{chan.caller_num}@office")
