"""Petition case handling (涉诉信访办理): cases, contacts, triage, assignment, supervision,
meetings and closing; the rules of a case live in :mod:`scheduler.cases.rules`."""
