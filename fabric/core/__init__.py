"""Pure logic with no I/O: change-event decoding, key encoding, partition choice."""
