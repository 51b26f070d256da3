"""The OpenTelemetry SDK with the OTLP/HTTP exporter (protobuf, gzip), no Langfuse SDK: a root span and a chat
span with gen_ai semantic-convention attributes, exported to the gateway. Prints the ids as JSON."""

import base64
import json
import os
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

credentials = f"{os.environ['LANGFUSE_PUBLIC_KEY']}:{os.environ['LANGFUSE_SECRET_KEY']}"
exporter = OTLPSpanExporter(
    endpoint=os.environ["LANGFUSE_HOST"] + "/api/public/otel/v1/traces",
    headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()},
    compression=Compression.Gzip,
)
provider = TracerProvider(resource=Resource.create({"service.name": "genai-app", "deployment.environment": "staging"}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("my.genai.instrumentation")

with tracer.start_as_current_span("handle request") as root:
    root.set_attribute("user.id", "otel-user")
    with tracer.start_as_current_span("chat gpt-4o-mini") as chat:
        chat.set_attribute("gen_ai.operation.name", "chat")
        chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        chat.set_attribute("gen_ai.request.temperature", 0.2)
        chat.set_attribute("gen_ai.usage.input_tokens", 2000)
        chat.set_attribute("gen_ai.usage.output_tokens", 500)
        chat.set_attribute("gen_ai.prompt.0.role", "user")
        chat.set_attribute("gen_ai.prompt.0.content", "hello")
        chat.set_attribute("gen_ai.completion.0.role", "assistant")
        chat.set_attribute("gen_ai.completion.0.content", "hi there")
    with tracer.start_as_current_span("tool call") as failing:
        failing.set_status(Status(StatusCode.ERROR, "tool timed out"))
ids = {
    "trace": format(root.get_span_context().trace_id, "032x"),
    "root": format(root.get_span_context().span_id, "016x"),
    "chat": format(chat.get_span_context().span_id, "016x"),
    "failing": format(failing.get_span_context().span_id, "016x"),
}
provider.shutdown()
json.dump(ids, sys.stdout)
