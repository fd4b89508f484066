"""``/announce``: the chief moderators' form for an announcement to every list of a room, each in its
language — the same ``Announcer`` as ``listserv announce FILE.yaml``."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from listserv.web.app import Ctx, Page, Problem
from listserv.weekly.announcements import Announcer, announcement_from
from listserv.weekly.topics import TopicError, language_name


def _chief_announcer(ctx: Ctx) -> Announcer:
    if not ctx.member().is_chief:
        raise Problem(403, "announce_chiefs_only")
    if ctx.site.announcer is None:
        raise Problem(404, "http_404")
    return ctx.site.announcer


def _form(ctx: Ctx, room: str, status: int = 200, **extra: Any) -> Response:
    settings = ctx.site.settings
    rooms = [r.name for r in settings.rooms]
    if room not in rooms:
        room = rooms[0]
    languages = settings.room_languages(settings.room(room))
    shown = {"sent": [], "already": False, "problem": False, "values": {}} | extra
    return ctx.render(
        "announce.html",
        status,
        rooms=rooms,
        room=room,
        room_languages=languages,
        language_name=lambda code: language_name(code, ctx.language),
        **shown,
    )


def announce_form(ctx: Ctx) -> Response:
    _chief_announcer(ctx)
    return _form(ctx, ctx.query("room"))


def announce_send(ctx: Ctx) -> Response:
    announcer = _chief_announcer(ctx)
    room = ctx.field("room")
    languages = [ml.language for ml in ctx.site.settings.lists.values() if ml.room == room]
    subjects = {lang: ctx.field(f"subject_{lang}") for lang in languages if ctx.field(f"subject_{lang}")}
    bodies = {lang: ctx.field(f"body_{lang}") for lang in languages if ctx.field(f"body_{lang}")}
    values = {
        f"{kind}_{lang}": ctx.field(f"{kind}_{lang}") for kind in ("subject", "body") for lang in languages
    }
    try:
        spec = announcement_from({"room": room, "subjects": subjects, "bodies": bodies}, ctx.site.settings)
    except TopicError:
        return _form(ctx, room, 400, problem=True, values=values)
    sent = announcer.announce(ctx.db, spec, ctx.site.clock())
    return _form(ctx, room, sent=sent, already=not sent, values={} if sent else values)


PAGES = [
    Page("/announce", announce_form, name="announce"),
    Page("/announce", announce_send, methods=("POST",), name="announce_send"),
]
