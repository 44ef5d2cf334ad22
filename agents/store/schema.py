"""The session store's schema as code.

`SCHEMA` is applied with OVERWRITE whenever the recorded version differs from `SCHEMA_VERSION`, so a
changed definition takes effect on the next start-up or `manage.py surreal_migrate`; bump the version
with every change.

Messages are keyed `message:[session, seq]`: the last N messages of a session are one record-ID
range read whose cost does not depend on the session's length (an `ORDER BY seq DESC LIMIT N`
sorts the whole session; see docs/sessions.md).
"""

SCHEMA_VERSION = 3

SCHEMA = """
DEFINE TABLE OVERWRITE meta SCHEMALESS;

DEFINE TABLE OVERWRITE session SCHEMAFULL;
DEFINE FIELD OVERWRITE key ON session TYPE string ASSERT string::len($value) > 0;
DEFINE FIELD OVERWRITE agent ON session TYPE string ASSERT string::len($value) > 0;
DEFINE FIELD OVERWRITE channel ON session TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE account ON session TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE peer ON session TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE guild ON session TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE team ON session TYPE string DEFAULT '';
-- Who may read and steer it without sessions:* scopes: a principal (`token:alice`), or a platform's
-- namespace (`channel:telegram`); '' for sessions made before version 3 (docs/protocol.md, "Ownership").
DEFINE FIELD OVERWRITE owner ON session TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE title ON session TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE created ON session TYPE datetime DEFAULT time::now() READONLY;
DEFINE FIELD OVERWRITE updated ON session TYPE datetime DEFAULT time::now();
DEFINE FIELD OVERWRITE message_count ON session TYPE int DEFAULT 0 ASSERT $value >= 0;
DEFINE FIELD OVERWRITE tokens_in ON session TYPE int DEFAULT 0;
DEFINE FIELD OVERWRITE tokens_out ON session TYPE int DEFAULT 0;
DEFINE FIELD OVERWRITE status ON session TYPE string DEFAULT 'idle'
    ASSERT $value IN ['idle', 'queued', 'running', 'done', 'error', 'aborted'];
DEFINE FIELD OVERWRITE current ON session TYPE bool DEFAULT true;
DEFINE FIELD OVERWRITE previous ON session TYPE option<record<session>>;
DEFINE INDEX OVERWRITE session_key ON session FIELDS key;
DEFINE INDEX OVERWRITE session_updated ON session FIELDS updated;
DEFINE INDEX OVERWRITE session_agent ON session FIELDS agent;
DEFINE INDEX OVERWRITE session_channel ON session FIELDS channel;
DEFINE INDEX OVERWRITE session_peer ON session FIELDS peer;
DEFINE INDEX OVERWRITE session_owner ON session FIELDS owner;

-- session_key:⟨key⟩ points at the key's current session; `reset` moves the pointer.
DEFINE TABLE OVERWRITE session_key SCHEMAFULL;
DEFINE FIELD OVERWRITE current ON session_key TYPE record<session>;

DEFINE TABLE OVERWRITE message SCHEMAFULL;
DEFINE FIELD OVERWRITE session ON message TYPE record<session>;
DEFINE FIELD OVERWRITE seq ON message TYPE int ASSERT $value >= 1;
DEFINE FIELD OVERWRITE role ON message TYPE string ASSERT $value IN ['user', 'assistant', 'system'];
DEFINE FIELD OVERWRITE content ON message TYPE array<object> FLEXIBLE;
DEFINE FIELD OVERWRITE text ON message TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE run ON message TYPE option<record<run>>;
DEFINE FIELD OVERWRITE tokens ON message TYPE option<int>;
DEFINE FIELD OVERWRITE interrupted ON message TYPE option<string>;
DEFINE FIELD OVERWRITE created ON message TYPE datetime DEFAULT time::now() READONLY;
-- Full-text search: the message's distinct stemmed words (agents/store/shapes.py: words_of) under a
-- plain index. A SEARCH (BM25) index made each append about ten times slower, and slower still as
-- it grew; see docs/benchmarks.md.
DEFINE FIELD OVERWRITE words ON message TYPE array<string> DEFAULT [];
DEFINE INDEX OVERWRITE message_words ON message FIELDS words;

DEFINE TABLE OVERWRITE run SCHEMAFULL;
DEFINE FIELD OVERWRITE session ON run TYPE record<session>;
DEFINE FIELD OVERWRITE session_key ON run TYPE string;
DEFINE FIELD OVERWRITE agent ON run TYPE string;
DEFINE FIELD OVERWRITE owner ON run TYPE string DEFAULT '';
DEFINE FIELD OVERWRITE status ON run TYPE string ASSERT $value IN ['queued', 'running', 'done', 'error', 'aborted'];
DEFINE FIELD OVERWRITE idempotency_key ON run TYPE option<string>;
DEFINE FIELD OVERWRITE created ON run TYPE datetime DEFAULT time::now() READONLY;
DEFINE FIELD OVERWRITE started ON run TYPE option<datetime>;
DEFINE FIELD OVERWRITE finished ON run TYPE option<datetime>;
DEFINE FIELD OVERWRITE stop_reason ON run TYPE option<string>;
DEFINE FIELD OVERWRITE usage ON run TYPE object FLEXIBLE DEFAULT {};
DEFINE FIELD OVERWRITE error ON run TYPE option<string>;
DEFINE FIELD OVERWRITE tool_calls ON run TYPE array<object> FLEXIBLE DEFAULT [];
DEFINE INDEX OVERWRITE run_session ON run FIELDS session;

-- idempotency:[session_key, key] -> run; its record id makes a repeated key a write conflict.
DEFINE TABLE OVERWRITE idempotency SCHEMAFULL;
DEFINE FIELD OVERWRITE run ON idempotency TYPE record<run>;
DEFINE FIELD OVERWRITE created ON idempotency TYPE datetime DEFAULT time::now() READONLY;

-- Version 2: seen_update (webhook deliveries) is gone; webhooks keep their dedupe records in
-- Django's database (webhooks.models.WebhookEvent). Remove it from stores made by version 1.
REMOVE TABLE IF EXISTS seen_update;
"""
