-- At most one recording runs per meeting: two start requests at once cannot both create one.
CREATE UNIQUE INDEX recordings_one_running ON recordings (meeting_id) WHERE status = 'recording';
