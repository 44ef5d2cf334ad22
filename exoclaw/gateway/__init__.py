"""The JSON-RPC 2.0 WebSocket gateway at /ws (docs/protocol.md)."""
