"""Log lines that name their case: ``with case_context("CHUV-001"): ...`` prefixes every record logged inside
(by any module, in this thread or context) with ``[CHUV-001] ``, through the ``case_prefix`` record attribute
that :func:`hmvnet.app.cli.configure_logging`'s format uses."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

CURRENT_CASE: contextvars.ContextVar[str | None] = contextvars.ContextVar("hmvnet_case", default=None)
_installed = False


@contextmanager
def case_context(case_id: str) -> Iterator[None]:
    """Within the block, log records carry ``case_prefix = "[case_id] "``."""
    token = CURRENT_CASE.set(case_id)
    try:
        yield
    finally:
        CURRENT_CASE.reset(token)


def install_case_filter() -> None:
    """Give every log record a ``case_prefix`` attribute (``""`` outside a case); idempotent.

    A record factory rather than a handler filter, so handlers swapped in later (tqdm's
    ``logging_redirect_tqdm``) format the attribute too."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        case = CURRENT_CASE.get()
        record.case_prefix = f"[{case}] " if case else ""
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
