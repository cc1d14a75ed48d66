"""The QStash v2 wire contract over HTTP (qstash-api.md), answering only after the broker acks."""
