"""Mail written on the web enters here: stored in ``received`` in its own committed transaction, as
the spool stores SMTP mail before its 250, then handed to the same worker — so it meets the same
posting policy, holds, notices and reply codes as mail, and survives a crash the same way."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.store.db import utc_now
from listserv.store.models import Received

WEB_PEER = "web"  # the ``peer`` of mail written in a signed-in web session


def submit_received(
    engine: Engine, wake_worker: Callable[[], None], mail_from: str, rcpt: str, raw: bytes, message_id: str
) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            Received(
                received_at=utc_now(),
                peer=WEB_PEER,
                mail_from=mail_from,
                rcpt_tos=[rcpt],
                message_id=message_id,
                raw=raw,
                state="new",
                attempts=0,
            )
        )
    wake_worker()
