package protocol

// Error is the JSON body of every 4xx/5xx answer and of WebSocket error
// frames. Code is stable: clients switch on it; Message is for humans.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Stable error codes. Add, never rename.
const (
	ErrBadJSON          = "bad_json"          // malformed JSON or frame
	ErrUnknownField     = "unknown_field"     // a field the server does not know
	ErrMissingField     = "missing_field"     // a required field is absent or empty
	ErrInvalidField     = "invalid_field"     // a field's value is not allowed
	ErrInvalidUTF8      = "invalid_utf8"      // text is not valid UTF-8
	ErrTooLarge         = "too_large"         // body/frame/content over the limit
	ErrUnauthenticated  = "unauthenticated"   // no, expired, forged or wrong-key token
	ErrForbidden        = "forbidden"         // authenticated, but not allowed
	ErrNotFound         = "not_found"         // no such conversation or message
	ErrIdempotencyClash = "idempotency_clash" // client_msg_id reused with other content
	ErrRecallExpired    = "recall_expired"    // recall window has passed
	ErrRateLimited      = "rate_limited"      // too many requests or frames
	ErrUnavailable      = "unavailable"       // a dependency is down; retry
	ErrInternal         = "internal"
	ErrNotMember        = "not_member"      // groups: the caller is not a member
	ErrGroupDissolved   = "group_dissolved" // groups: the group was dissolved
	ErrLimitReached     = "limit_reached"   // groups: group size or groups per user
	ErrExists           = "already_exists"  // groups: the group id is taken
	ErrSlowConsumer     = "slow_consumer"   // push: client could not keep up
	ErrKicked           = "kicked"          // push: same terminal logged in elsewhere
	ErrDraining         = "draining"        // push: node shutting down, reconnect
	ErrIdleTimeout      = "idle_timeout"    // push: no frame within the idle timeout
	ErrAtCapacity       = "at_capacity"     // push: node holds its maximum connections
	ErrTokenExpired     = "token_expired"   // push: the session's token expired; reconnect with a fresh one
	ErrCursorExpired    = "cursor_expired"  // sync: the cursor is older than the feed's retention, or ahead of the log; resync (docs/protocol.md)
)
