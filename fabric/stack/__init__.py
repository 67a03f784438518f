"""The local stack as plain processes: Postgres, a KRaft broker, Connect with Debezium."""
