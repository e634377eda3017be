-- /notifications: the background prune finds notifications past
-- `max_age_days` by their creation time.
CREATE INDEX notifications_by_age ON notifications (created_at);
