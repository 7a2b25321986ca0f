"""One place that imports every table module, so ``Base.metadata`` is complete."""

from __future__ import annotations


def import_all_models() -> None:
    import config.audit  # noqa: F401
    import recorder.models  # noqa: F401
    import scheduler.cases.models
    import scheduler.models
    import scheduler.portal.feedback_models
    import scheduler.portal.models
    import scheduler.stats.models  # noqa: F401
    import web.auth  # noqa: F401
