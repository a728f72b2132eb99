package presence

// Session is one connected device session.
type Session struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Terminal string `json:"terminal"` // web, ios, android, desktop, ...
	NodeID   string `json:"node_id"`
	Epoch    int64  `json:"epoch"` // grows with every login of this device
	SinceMs  int64  `json:"since_ms"`
}

// Node is a live push node and how message pods reach it.
type Node struct {
	ID         string `json:"id"`
	DeliverURL string `json:"deliver_url"` // base URL of its internal listener
}

// Directory answers presence questions from a watch-fed cache.
// Implementations are safe for concurrent use and never block on etcd:
// answers may lag etcd by the watch delay.
type Directory interface {
	// Sessions returns the live sessions of userID (nil when offline).
	Sessions(userID string) []Session
	// Node returns the registry entry of a live node.
	Node(nodeID string) (Node, bool)
}
