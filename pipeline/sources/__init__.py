"""Where events come from: Kafka topics read by the Faust app."""
