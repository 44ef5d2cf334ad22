"""The fields a message is routed by, and their length: `routing.models.Binding` stores them, and
every entry point that accepts them (the gateway, session RPC, the config file) checks the same limit."""

MATCH_FIELDS = ("channel", "account", "peer", "guild", "team")
FIELD_MAX_LENGTH = 128
