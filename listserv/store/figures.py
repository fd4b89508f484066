"""Figures kept as data, holding no content: a thread's size, posts per day, subscriptions that ended.
Kept beside the tables they count so that pages and ``listserv stats`` never count history per view;
erasure leaves them (they name no one and quote nothing)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from listserv.store.base import Base


class ThreadFigures(Base):
    """A thread's size and latest activity, kept as posts are archived (migration 0016): a list page
    is one short index range in ``(list_name, latest_at, thread_id)`` order at any depth."""

    __tablename__ = "post_thread"
    __table_args__ = (Index("ix_post_thread_list_latest", "list_name", "latest_at", "thread_id"),)

    thread_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    list_name: Mapped[str] = mapped_column(String(100))
    posts: Mapped[int] = mapped_column(Integer, default=0)
    latest_at: Mapped[datetime]


class DayFigures(Base):
    """Posts archived on a list per UTC day, kept as posts are archived (migration 0016): the month
    calendar adds up days instead of counting a year of posts on every list page."""

    __tablename__ = "post_day"

    list_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    posts: Mapped[int] = mapped_column(Integer, default=0)


class SubscriptionEnded(Base):
    """A subscription that ended (unsubscribed, removed, erased): when it began and ended, the list and
    the member state, never who. Written by ``store/history.py`` as the subscription row is deleted, so
    that ``listserv stats`` can count members at the end of a past period and those who left."""

    __tablename__ = "subscription_ended"
    __table_args__ = (Index("ix_subscription_ended_list_left", "list_name", "left_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_name: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(100), default="")
    joined_at: Mapped[datetime]
    left_at: Mapped[datetime]
