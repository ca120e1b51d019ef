"""swingdial: live audience sentiment, posts -> Kafka -> scoring -> DuckDB -> dashboard."""

__version__ = "0.1.0"
