package protocol

// DeliveryPath is the push tier's internal endpoint (on IM_INTERNAL_ADDR)
// that message pods POST DeliveryBatch JSON to, authenticated with a bearer
// token signed by the internal key (see services/auth).
const DeliveryPath = "/internal/v1/deliver"

// MaxDeliveryBatch bounds the items of one DeliveryBatch.
const MaxDeliveryBatch = 1000

// MaxDeliveryBytes bounds the JSON body of one delivery call: a push node
// refuses a bigger one (413), so a router splits a batch that encodes
// bigger (1000 large messages whose bodies escape badly can exceed it).
const MaxDeliveryBytes = 32 << 20

// Target is one device session as presence knows it. Epoch identifies the
// session: a push node delivers only if the device's live session still has
// this epoch, so a stale route never reaches a newer session twice.
type Target struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Epoch    int64  `json:"epoch"`
}

// Delivery is one event for some device sessions on the receiving node.
type Delivery struct {
	Event   Event    `json:"event"`
	Targets []Target `json:"targets"`
}

// DeliveryBatch is what one message pod sends one push node in one call.
// Order of Deliveries is the order the node must enqueue them in, per device.
type DeliveryBatch struct {
	Deliveries []Delivery `json:"deliveries"`
}

// DeliveryResult answers a DeliveryBatch. Devices not (or no longer)
// connected to the node are counted as Missed, not retried: they will sync.
type DeliveryResult struct {
	Queued int `json:"queued"`
	Missed int `json:"missed"`
}
