"""The one door to Redis: batching, bounds, deadlines, resends, breakers, scripts,
wake-ups. Private: nothing here is part of the public API."""
