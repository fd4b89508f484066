"""The declarative base every table shares (``models``, ``figures``): one registry, one metadata."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy.orm import DeclarativeBase

from listserv.store.db import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: UTCDateTime}
