"""The challenge platform: a self-hostable server for running a segmentation challenge.

Layers, each depending only on the ones before it:

- :mod:`~covseg.platform.config` (settings), :mod:`~covseg.platform.db` (engine, sessions,
  migrations) and :mod:`~covseg.platform.models` (SQLAlchemy tables);
- :mod:`covseg.platform.services` (the rules: accounts, teams, phases, submissions, leaderboards),
  testable without HTTP;
- :mod:`~covseg.platform.tasks` (durable evaluation on a Huey queue, run by ``covseg worker``);
- :mod:`covseg.platform.api` (JSON API) and :mod:`covseg.platform.web` (server-rendered pages),
  assembled by :func:`covseg.platform.app.create_app`.
"""
