from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NullValue(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NULL_VALUE: _ClassVar[NullValue]
NULL_VALUE: NullValue

class Value(_message.Message):
    __slots__ = ("null", "boolean", "int", "decimal", "double", "text", "bytes", "uuid", "date", "time", "timestamp", "timestamptz", "interval", "json", "array")
    NULL_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    DECIMAL_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPTZ_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    null: NullValue
    boolean: bool
    int: int
    decimal: str
    double: float
    text: str
    bytes: bytes
    uuid: str
    date: int
    time: int
    timestamp: int
    timestamptz: int
    interval: Interval
    json: str
    array: ValueList
    def __init__(self, null: _Optional[_Union[NullValue, str]] = ..., boolean: _Optional[bool] = ..., int: _Optional[int] = ..., decimal: _Optional[str] = ..., double: _Optional[float] = ..., text: _Optional[str] = ..., bytes: _Optional[bytes] = ..., uuid: _Optional[str] = ..., date: _Optional[int] = ..., time: _Optional[int] = ..., timestamp: _Optional[int] = ..., timestamptz: _Optional[int] = ..., interval: _Optional[_Union[Interval, _Mapping]] = ..., json: _Optional[str] = ..., array: _Optional[_Union[ValueList, _Mapping]] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("months", "days", "micros")
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    months: int
    days: int
    micros: int
    def __init__(self, months: _Optional[int] = ..., days: _Optional[int] = ..., micros: _Optional[int] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: Value
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    def __init__(self, fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    def __init__(self, fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ...) -> None: ...

class Freshness(_message.Message):
    __slots__ = ("lsn", "commit_time_ms", "partition", "offset", "applied_offset", "lag_records", "served_by")
    LSN_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    APPLIED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    commit_time_ms: int
    partition: int
    offset: int
    applied_offset: int
    lag_records: int
    served_by: str
    def __init__(self, lsn: _Optional[int] = ..., commit_time_ms: _Optional[int] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., applied_offset: _Optional[int] = ..., lag_records: _Optional[int] = ..., served_by: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("table", "key", "bound")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: Key
    bound: PositionBound
    def __init__(self, table: _Optional[str] = ..., key: _Optional[_Union[Key, _Mapping]] = ..., bound: _Optional[_Union[PositionBound, _Mapping]] = ...) -> None: ...

class PositionBound(_message.Message):
    __slots__ = ("min_lsn", "max_staleness_ms")
    MIN_LSN_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    min_lsn: int
    max_staleness_ms: int
    def __init__(self, min_lsn: _Optional[int] = ..., max_staleness_ms: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("found", "row", "freshness")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    row: Row
    freshness: Freshness
    def __init__(self, found: _Optional[bool] = ..., row: _Optional[_Union[Row, _Mapping]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class BatchGetRequest(_message.Message):
    __slots__ = ("lookups",)
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    lookups: _containers.RepeatedCompositeFieldContainer[GetRequest]
    def __init__(self, lookups: _Optional[_Iterable[_Union[GetRequest, _Mapping]]] = ...) -> None: ...

class LookupResult(_message.Message):
    __slots__ = ("status", "message", "found", "row", "freshness")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    found: bool
    row: Row
    freshness: Freshness
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ..., found: _Optional[bool] = ..., row: _Optional[_Union[Row, _Mapping]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class BatchGetResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[LookupResult]
    def __init__(self, results: _Optional[_Iterable[_Union[LookupResult, _Mapping]]] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("table", "prefix", "range_start", "range_end", "limit", "resume_token", "partition")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    RANGE_START_FIELD_NUMBER: _ClassVar[int]
    RANGE_END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    table: str
    prefix: Key
    range_start: Key
    range_end: Key
    limit: int
    resume_token: str
    partition: int
    def __init__(self, table: _Optional[str] = ..., prefix: _Optional[_Union[Key, _Mapping]] = ..., range_start: _Optional[_Union[Key, _Mapping]] = ..., range_end: _Optional[_Union[Key, _Mapping]] = ..., limit: _Optional[int] = ..., resume_token: _Optional[str] = ..., partition: _Optional[int] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("row", "freshness", "resume_token")
    ROW_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    row: Row
    freshness: Freshness
    resume_token: str
    def __init__(self, row: _Optional[_Union[Row, _Mapping]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class GetTopologyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Topology(_message.Message):
    __slots__ = ("tables", "instances")
    TABLES_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableInfo]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    def __init__(self, tables: _Optional[_Iterable[_Union[TableInfo, _Mapping]]] = ..., instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ("table", "topic", "primary_key", "partitions", "key_columns")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_KEY_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    KEY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    table: str
    topic: str
    primary_key: _containers.RepeatedScalarFieldContainer[str]
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionInfo]
    key_columns: _containers.RepeatedCompositeFieldContainer[KeyColumn]
    def __init__(self, table: _Optional[str] = ..., topic: _Optional[str] = ..., primary_key: _Optional[_Iterable[str]] = ..., partitions: _Optional[_Iterable[_Union[PartitionInfo, _Mapping]]] = ..., key_columns: _Optional[_Iterable[_Union[KeyColumn, _Mapping]]] = ...) -> None: ...

class KeyColumn(_message.Message):
    __slots__ = ("name", "pg_type", "base_type", "is_enum")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PG_TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_ENUM_FIELD_NUMBER: _ClassVar[int]
    name: str
    pg_type: str
    base_type: str
    is_enum: bool
    def __init__(self, name: _Optional[str] = ..., pg_type: _Optional[str] = ..., base_type: _Optional[str] = ..., is_enum: _Optional[bool] = ...) -> None: ...

class PartitionInfo(_message.Message):
    __slots__ = ("partition", "owner", "endpoint", "state", "lag_records")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    partition: int
    owner: str
    endpoint: str
    state: str
    lag_records: int
    def __init__(self, partition: _Optional[int] = ..., owner: _Optional[str] = ..., endpoint: _Optional[str] = ..., state: _Optional[str] = ..., lag_records: _Optional[int] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("instance_id", "endpoint")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    endpoint: str
    def __init__(self, instance_id: _Optional[str] = ..., endpoint: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("table", "key", "prefix", "resume_token")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: Key
    prefix: Key
    resume_token: str
    def __init__(self, table: _Optional[str] = ..., key: _Optional[_Union[Key, _Mapping]] = ..., prefix: _Optional[_Union[Key, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("kind", "key", "row", "freshness", "resume_token")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchEvent.Kind]
        UPSERT: _ClassVar[WatchEvent.Kind]
        DELETE: _ClassVar[WatchEvent.Kind]
        TRUNCATE: _ClassVar[WatchEvent.Kind]
    KIND_UNSPECIFIED: WatchEvent.Kind
    UPSERT: WatchEvent.Kind
    DELETE: WatchEvent.Kind
    TRUNCATE: WatchEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEvent.Kind
    key: Key
    row: Row
    freshness: Freshness
    resume_token: str
    def __init__(self, kind: _Optional[_Union[WatchEvent.Kind, str]] = ..., key: _Optional[_Union[Key, _Mapping]] = ..., row: _Optional[_Union[Row, _Mapping]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...
