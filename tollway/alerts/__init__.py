"""Alerts: webhooks told when a budget or rate limit crosses a threshold of its window,
or will run out before its window resets at the last hour's rate.

`detect` decides (pure), `monitor` samples the counters off the request path and claims
each crossing once in the database, `delivery` signs and posts with retries.
"""
