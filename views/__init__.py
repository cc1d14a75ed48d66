"""Read models kept from Kafka topics: the one consumer that follows a topic, and the views on it;
and the batch appender the API, the senders and the intake write through (appender.py).

Every room may import this one (producers' API views, the stream workers' URL groups, the
senders' signing keys); it imports only ``kafstash.schemas`` and aiokafka.
"""
