"""Where processed data becomes durable: ClickHouse rows, archive objects and dead letters."""
