-- twin_state_at: the state of one twin as of a point in time.
-- Parameters: %(twin_id)s, %(at)s (timestamptz). Returns the newest version whose event time is
-- at or before `at` (versions and event times grow together), or no row when the twin had no state yet.
SELECT twin_id, version, desired_version, event_time, status, mode, learn, reported, desired, delta, conflicts, commands,
       consistency_score, sync_latency_ms, last_sync_time, desync_since, change
FROM twin_state_history
WHERE twin_id = %(twin_id)s
  AND event_time <= %(at)s
ORDER BY event_time DESC, version DESC
LIMIT 1;
