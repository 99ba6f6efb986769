"""An SMTP server for the tests (aiosmtpd): stores every mail it accepts in a Maildir.

Recipients starting with "reject" are refused with 550, those starting with "busy" get one 451
before they are accepted. Usage: smtp_peer.py PORT MAILDIR
"""
import mailbox
import sys
import threading

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, directory):
        self.box = mailbox.Maildir(directory, create=True)
        self.refused_once = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 No such mailbox"
        if address.startswith("busy"):
            with self.lock:
                if address not in self.refused_once:
                    self.refused_once.add(address)
                    return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.box.add(envelope.original_content or envelope.content)
        return "250 Message accepted"


def main():
    import logging, os
    if os.environ.get("SMTP_PEER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    port = int(sys.argv[1])
    controller = Controller(Handler(sys.argv[2]), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
