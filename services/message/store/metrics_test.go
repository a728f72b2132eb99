package store

import "testing"

func TestClassify(t *testing.T) {
	for _, tc := range []struct{ cql, op, table string }{
		{cqlInsertMessage, "write", "messages"},
		{cqlInsertFeed, "write", "feed"},
		{cqlRecallFeed, "write", "feed"},
		{cqlPartState, "write", "partition_state"},
		{`UPDATE conversations USING TIMESTAMP ? SET last_seq = ? WHERE user_id = ? AND conv_id = ?`, "write", "conversations"},
		{`SELECT topic_id, max_off FROM partition_state WHERE topic = ? AND part = ?`, "read", "partition_state"},
		{`select release_version from system.local`, "read", "system.local"},
		{`INSERT INTO conv_pins(user_id, conv_id) VALUES (?, ?)`, "write", "conv_pins"},
		{`DELETE FROM conv_pins WHERE user_id = ?`, "write", "conv_pins"},
		{`TRUNCATE feed`, "write", "other"},
		{``, "write", "other"},
		{`SELECT`, "read", "other"},
		{`UPDATE`, "write", "other"},
	} {
		op, table := classify(tc.cql)
		if op != tc.op || table != tc.table {
			t.Errorf("classify(%q) = %s, %s; want %s, %s", tc.cql, op, table, tc.op, tc.table)
		}
	}
}
