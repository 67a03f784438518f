"""Generated code of protos/fabric/rpc/v1 (scripts/gen-protos); never edited by hand."""
