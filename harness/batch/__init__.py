"""Batch endpoints as targets: a target with ``mode: batch`` sends its requests as one (or a few bounded)
provider batch jobs instead of one HTTP request each.

* :mod:`harness.batch.model` — typed job states, statuses and per-line outcomes;
* :mod:`harness.batch.protocol` — what a protocol's batch mode does (submit, poll, collect) and which
  protocols have one;
* :mod:`harness.batch.openai` — OpenAI's Batch API for image generations;
* :mod:`harness.batch.gemini` — Gemini Batch Mode with inline requests;
* :mod:`harness.batch.runner` — one target's jobs inside a run: submit (persisted at once), poll, collect,
  one final attempt per request, resume without resubmitting.
"""
