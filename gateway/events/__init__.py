"""Domain events leaving Broen: the gateway's event log (fed by the services' outboxes
through NATS JetStream or, embedded, straight from their databases), projected per reader
by the personvern policy, and delivered as a changes feed and as signed webhooks."""
