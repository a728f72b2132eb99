package config

import (
	"reflect"
	"testing"
	"time"
)

func TestEnvRoundTrip(t *testing.T) {
	common := Common{
		NodeID: "pod-1", HTTPAddr: ":8080", InternalAddr: ":9091", MetricsAddr: ":9090",
		EtcdEndpoints: []string{"etcd-0:2379", "etcd-1:2379"}, EtcdPrefix: "/imcluster/ns/x",
		EtcdTLSDir: "/etc/imcluster/etcd-tls", InternalKeyFile: "/k/internal", ShutdownGrace: 40 * time.Second,
		TLSCertFile: "/tls/tls.crt", TLSKeyFile: "/tls/tls.key", TLSCAFile: "/ca/ca.crt",
	}
	msg := Message{
		Common: common,
		Kafka: Kafka{Brokers: []string{"k-0:9092", "k-1:9092"}, Topic: "t", DLQTopic: "t.dlq", Partitions: 24,
			ReplicationFactor: 3, Group: "g", TLSDir: "/tls", SASLUserFile: "/u", SASLPassFile: "/p", FetchWait: 20 * time.Millisecond},
		Cassandra: Cassandra{Hosts: []string{"c-0:9042"}, Keyspace: "ks", LocalDC: "dc1",
			Replication: "NetworkTopologyStrategy:dc1=3,dc2=3", UserFile: "/cu", PassFile: "/cp"},
		UserKeyFile: "/k/user", ServiceKeyFile: "/k/service", MaxMessageBytes: 4096, RecallWindow: 90 * time.Second, MaxGroupMembers: 200, MaxGroupsPerUser: 30,
		FeedRetention: 7 * 24 * time.Hour,
	}
	forever := msg
	forever.FeedRetention = FeedRetentionForever
	push := Push{
		Common: common, UserKeyFile: "/k/user", AdvertiseURL: "http://10.0.0.1:9091",
		MessageURL: "http://x-message:8080", MaxConnections: 1000, HeartbeatInterval: 15 * time.Second,
		SendQueue: 64, PresenceLeaseTTL: 5 * time.Second,
	}
	tests := []struct {
		name string
		env  map[string]string
		load func(Getenv) (any, error)
		want any
	}{
		{"message", msg.Env(), func(g Getenv) (any, error) { return LoadMessage(g) }, msg},
		{"message keeping the feed forever", forever.Env(), func(g Getenv) (any, error) { return LoadMessage(g) }, forever},
		{"push", push.Env(), func(g Getenv) (any, error) { return LoadPush(g) }, push},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.load(func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("round trip differs:\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
}

func TestEnvOmitsZeroFields(t *testing.T) {
	e := Push{}.Env()
	if len(e) != 0 {
		t.Fatalf("zero Push rendered %v, want nothing", e)
	}
	m := Message{Kafka: Kafka{Partitions: 6}}.Env()
	if len(m) != 1 || m[EnvKafkaPartitions] != "6" {
		t.Fatalf("got %v, want only %s=6", m, EnvKafkaPartitions)
	}
}

// A certificate without its key (or the reverse) is a configuration error.
func TestTLSPairTogether(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{"neither", map[string]string{}, false},
		{"both", map[string]string{EnvTLSCertFile: "/c", EnvTLSKeyFile: "/k"}, false},
		{"cert only", map[string]string{EnvTLSCertFile: "/c"}, true},
		{"key only", map[string]string{EnvTLSKeyFile: "/k"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			get := func(k string) string { return tc.env[k] }
			if _, err := LoadMessage(get); (err != nil) != tc.wantErr {
				t.Fatalf("LoadMessage: err=%v, want error %v", err, tc.wantErr)
			}
			if _, err := LoadPush(get); (err != nil) != tc.wantErr {
				t.Fatalf("LoadPush: err=%v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// durationCase is one value of a duration setting and what LoadMessage
// makes of it.
type durationCase struct {
	env     string
	want    time.Duration
	wantErr bool
}

// checkDurationSetting loads a Message with only key set to each case's
// env and checks the field got reads, or the error.
func checkDurationSetting(t *testing.T, key string, tests []durationCase, got func(Message) time.Duration) {
	t.Helper()
	for _, tc := range tests {
		m, err := LoadMessage(func(k string) string {
			if k == key {
				return tc.env
			}
			return ""
		})
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s=%q: no error (got %v)", key, tc.env, got(m))
			}
			continue
		}
		if err != nil || got(m) != tc.want {
			t.Errorf("%s=%q: got %v, %v; want %v", key, tc.env, got(m), err, tc.want)
		}
	}
}

func TestFeedRetention(t *testing.T) {
	checkDurationSetting(t, EnvFeedRetention, []durationCase{
		{"", DefaultFeedRetention, false},
		{"0", FeedRetentionForever, false},
		{"0s", FeedRetentionForever, false},
		{"2s", 2 * time.Second, false},
		{"720h", 720 * time.Hour, false},
		{"500ms", 0, true},
		{"1500ms", 0, true},
		{"-1s", 0, true},
		{"200000h", 0, true},
		{"soon", 0, true},
	}, func(m Message) time.Duration { return m.FeedRetention })
}

func TestFetchWait(t *testing.T) {
	checkDurationSetting(t, EnvFetchWait, []durationCase{
		{"", DefaultFetchWait, false},
		{"1ms", time.Millisecond, false},
		{"50ms", 50 * time.Millisecond, false},
		{"500ms", MaxFetchWait, false},
		{"0", 0, true},
		{"0s", 0, true},
		{"501ms", 0, true},
		{"-5ms", 0, true},
		{"often", 0, true},
	}, func(m Message) time.Duration { return m.FetchWait })
}
