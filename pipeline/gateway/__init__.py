"""The Langfuse-compatible HTTP gateway: Langfuse SDKs, OpenTelemetry exporters, Dify and RAGFlow send here, and
every accepted event is acknowledged by Kafka before the client hears success."""
