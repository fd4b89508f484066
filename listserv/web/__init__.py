"""The web archive and moderation UI: Starlette, served by uvicorn inside ``serve``'s event loop.

Routes are data (``Page`` rows in each area's module). Every handler is a plain function run in the
thread pool with a ``Ctx`` — the viewer, the language, a database session, the checked form — so the
event loop that also serves SMTP never waits on the database.
"""
