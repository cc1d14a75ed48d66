"""The language every kafstash room speaks: typed commands and events, topic and header names.

Imports nothing of ours (import-linter enforces it). Every record that crosses Kafka is a frozen,
keyword-only, tagged msgspec Struct defined here and encoded as JSON, so a Kafka-native producer can
write the same bytes the API writes (see ``schemas/json/`` for the generated JSON Schema).
"""
