"""`rally dashboard`: a live, read-only web page of the fleet, served on localhost.

- :mod:`fleet` reads agents, tasks by state, the recent tasks and the tasks that ended from
  the read models (workers/readmodels/), caught up first; :mod:`throughput` keeps the rate.
- :mod:`heartbeats` listens for copies of the agents' heartbeats (not events, so not in the
  history) to show when each was last heard from.
- :mod:`data` builds the JSON views; :mod:`service` keeps them current; :mod:`server` serves
  the page (``static/``) and the JSON API.
"""
