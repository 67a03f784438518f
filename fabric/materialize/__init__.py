"""Materializers: members of one consumer group turning CDC topics into partition stores."""
