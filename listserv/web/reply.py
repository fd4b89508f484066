"""Replying to a message, or starting a discussion, from the archive. The text becomes the mail its
author would have sent (``reply_mail``) and enters the intake like SMTP mail (``Site.submit``): the
posting policy holds it, the moderators get their notice and reply code, and once approved it is
delivered and shown in its thread. Replying uses the very checks of reading the message
(``readable_post``): whoever may read a message, and only they, may answer it — a guest of one
discussion within it; starting a discussion needs the list (``readable_list``), which a guest never has."""

from __future__ import annotations

from starlette.responses import Response

from listserv.config import MailingList
from listserv.store.models import ArchivedPost
from listserv.web.app import Ctx, Page, Problem
from listserv.web.archive import readable_list, readable_post
from listserv.web.reply_mail import compose_web_mail, reply_subject

MAX_TEXT = 100_000  # characters: far above any real post, far below the SMTP size limit
MAX_SUBJECT = 300


def _form(
    ctx: Ctx, mailing_list: MailingList, parent: ArchivedPost | None, status: int = 200, **shown: object
) -> Response:
    values = {
        "subject": reply_subject(parent.subject) if parent else "",
        "text": "",
        "sent": False,
        "problem": "",
    }
    return ctx.render("reply.html", status, mailing_list=mailing_list, parent=parent, **(values | shown))


def _parent(ctx: Ctx) -> tuple[MailingList, ArchivedPost]:
    mailing_list, post = readable_post(ctx)
    if post.erased_at is not None:
        raise Problem(410, "erased", erased_at=post.erased_at)
    return mailing_list, post


def reply_form(ctx: Ctx) -> Response:
    return _form(ctx, *_parent(ctx))


def new_form(ctx: Ctx) -> Response:
    return _form(ctx, readable_list(ctx), None)


def reply_send(ctx: Ctx) -> Response:
    return _send(ctx, *_parent(ctx))


def new_send(ctx: Ctx) -> Response:
    return _send(ctx, readable_list(ctx), None)


def _send(ctx: Ctx, mailing_list: MailingList, parent: ArchivedPost | None) -> Response:
    subject, text = ctx.field("subject")[:MAX_SUBJECT], ctx.field("text")
    if not subject or not text:
        return _form(ctx, mailing_list, parent, 400, subject=subject, text=text, problem="empty")
    if len(text) > MAX_TEXT:
        return _form(ctx, mailing_list, parent, 400, subject=subject, text=text, problem="too_long")
    if ctx.site.submit is None:
        raise Problem(404, "http_404")
    viewer, site = ctx.member(), ctx.site.settings.site
    list_address = f"{mailing_list.name}@{site.domain}"
    raw, message_id = compose_web_mail(
        author=viewer.email,
        author_name=viewer.name,
        list_address=list_address,
        list_title=mailing_list.title,
        subject=subject,
        text=text,
        domain=site.domain,
        now=ctx.site.clock(),
        parent=(parent.message_id, parent.raw) if parent else None,
    )
    ctx.db.rollback()  # nothing of ours to commit; the mail is stored in its own transaction
    ctx.site.submit(viewer.email, list_address, raw, message_id)
    return _form(ctx, mailing_list, parent, subject=subject, sent=True)


PAGES = [
    Page("/lists/{list}/reply/{message_id:path}", reply_form, name="reply"),
    Page("/lists/{list}/reply/{message_id:path}", reply_send, methods=("POST",), name="reply_send"),
    Page("/lists/{list}/new", new_form, name="new_thread"),
    Page("/lists/{list}/new", new_send, methods=("POST",), name="new_thread_send"),
]
