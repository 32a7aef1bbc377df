"""`rally dashboard`: a live, read-only web page of the fleet, served on localhost.

- :mod:`projection` folds the event history into agents, tasks by state and the finish rate,
  fed incrementally from ``read_all(from_position)``; :mod:`throughput` keeps the rate.
- :mod:`heartbeats` listens for copies of the agents' heartbeats (not events, so not in the
  history) to show when each was last heard from.
- :mod:`data` builds the JSON views; :mod:`service` keeps them current; :mod:`server` serves
  the page (``static/``) and the JSON API.
"""
