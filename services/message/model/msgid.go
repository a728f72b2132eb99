package model

import "github.com/google/uuid"

// msgIDSpace is the UUIDv5 name space of message ids.
var msgIDSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://imcluster.io/ns/msg_id"))

// MessageID derives the message id of (sender, client_msg_id): a UUIDv5 of
// both, so every attempt of one send — through any message pod, minutes or
// days apart — carries the same id without asking anyone. The separator
// cannot occur in either part (user ids are auth.ValidSubject,
// client_msg_ids printable ASCII), so distinct pairs never share a name.
// The id hides the pair (SHA-1 of it) but is not a secret: anyone who
// knows both can compute it, which is what lets a retry find its message.
func MessageID(sender, clientMsgID string) string {
	return uuid.NewSHA1(msgIDSpace, []byte(sender+"\x00"+clientMsgID)).String()
}
