package presence

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// DialOptions are gRPC options for the etcd clients of presence: gRPC's
// default reconnect backoff grows to 120 s, so a client whose etcd was
// down for a minute could come back two minutes late; here it retries at
// least every second (with jitter), so a tier is ready again within a
// couple of seconds of etcd being back. Append them to
// clientv3.Config.DialOptions.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 2 * time.Second,
	})}
}
