-- The deployment report and retention read events by time alone, across meetings.
CREATE INDEX analytics_events_time ON analytics_events ("timestamp");
