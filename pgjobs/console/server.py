"""Serve the console with uvicorn (one process; the pages are light and the database does the work)."""

from __future__ import annotations

import logging

import uvicorn

from pgjobs.console.app import create_app
from pgjobs.console.settings import ConsoleSettings
from pgjobs.store import connecting

logger = logging.getLogger(__name__)


def serve(settings: ConsoleSettings, database: connecting.DatabaseSettings) -> int:
    app = create_app(settings, database)
    logger.info("pgjobs console on http://%s:%d/ (%s)", settings.address, settings.port, database.describe())
    uvicorn.run(app, host=settings.address, port=settings.port, log_level="warning", proxy_headers=False)
    return 0
